// read_annotation_file (eval_json.h): one VidVRD / VidOR annotation -> its ground-truth relation instances.
#include <algorithm>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "eval_json.h"
#include "json.h"

namespace uasan {

namespace {

using json::Cursor;
using json::Number;

[[noreturn]] void bad(const std::string& field, const std::string& problem) {
  throw std::invalid_argument("field '" + field + "': " + problem);
}

// A field's name, spelled out only for a message (the box loop must not build strings): base[i][j] + suffix.
struct Where {
  const char* base;
  int64_t i, j;  // j < 0: one index
  std::string operator()(const char* suffix = "") const {
    if (i < 0) return suffix;  // a top-level field
    return std::string(base) + "[" + std::to_string(i) + "]" + (j >= 0 ? "[" + std::to_string(j) + "]" : "") +
           suffix;
  }
};

int64_t read_int(Cursor& cur, const Where& w, const char* suffix) {
  if (!cur.at_number()) bad(w(suffix), std::string("expected int, got ") + cur.kind());
  const Number n = cur.number();
  int64_t v;
  if (!n.integer || !n.to_int64(v)) bad(w(suffix), "expected int, got " + std::string(n.text()));
  return v;
}

void read_str(Cursor& cur, const Where& w, const char* suffix, std::string& out) {
  if (cur.peek() != '"') bad(w(suffix), std::string("expected str, got ") + cur.kind());
  cur.string(&out);
}

// Enters the list that is the value of the top-level field `key`.
void open_list(Cursor& cur, std::string_view key) {
  if (cur.peek() != '[') bad(std::string(key), std::string("expected list, got ") + cur.kind());
  cur.expect('[', "'['");
}

// Enters the object at `at`.
void open_object(Cursor& cur, const Where& at) {
  if (cur.peek() != '{') bad(at(), "expected an object");
  cur.expect('{', "'{'");
}

struct Box {
  int64_t frame, index, tid;
  double b[4];
};

struct Rel {
  int64_t sub, obj, begin, end;
  std::string predicate;
};

}  // namespace

AnnotationRelations read_annotation_file(const char* data, int64_t size) {
  Cursor cur(data, size);
  AnnotationRelations out;
  bool has[5] = {false, false, false, false, false};  // video_id, frame_count, subject/objects, trajectories, rels
  int64_t frame_count = 0, frames = 0;
  std::vector<int64_t> tids;
  std::vector<std::string> cats;
  std::vector<Box> boxes;
  std::vector<Rel> rels;
  std::string_view key, sub_key, field;

  if (cur.peek() != '{') {
    cur.skip();
    cur.finish();
    bad("<document>", "expected an object");
  }
  cur.expect('{', "'{'");
  for (bool first = true; cur.next_key(key, first);) {
    if (json::is(key, "video_id")) {
      has[0] = true;
      if (cur.peek() != '"') bad("video_id", std::string("expected str, got ") + cur.kind());
      cur.string(&out.video_id);
    } else if (json::is(key, "frame_count")) {
      has[1] = true;
      frame_count = read_int(cur, Where{"", -1, -1}, "frame_count");
    } else if (json::is(key, "subject/objects")) {
      has[2] = true;
      tids.clear();
      cats.clear();
      open_list(cur, key);
      for (bool f1 = true; cur.next_item(f1);) {
        const Where at{"subject/objects", static_cast<int64_t>(tids.size()), -1};
        open_object(cur, at);
        bool has_tid = false, has_cat = false;
        int64_t tid = 0;
        std::string cat;
        for (bool f2 = true; cur.next_key(sub_key, f2);) {
          if (json::is(sub_key, "tid")) {
            tid = read_int(cur, at, ".tid");
            has_tid = true;
          } else if (json::is(sub_key, "category")) {
            read_str(cur, at, ".category", cat);
            has_cat = true;
          } else {
            cur.skip();
          }
        }
        if (!has_tid) bad(at(".tid"), "missing");
        if (!has_cat) bad(at(".category"), "missing");
        tids.push_back(tid);
        cats.push_back(cat);
      }
    } else if (json::is(key, "trajectories")) {
      has[3] = true;
      boxes.clear();
      frames = 0;
      open_list(cur, key);
      for (bool f1 = true; cur.next_item(f1); ++frames) {
        if (cur.peek() != '[') bad("trajectories[" + std::to_string(frames) + "]", "expected a list of boxes");
        cur.expect('[', "'['");
        int64_t j = 0;
        for (bool f2 = true; cur.next_item(f2); ++j) {
          const Where at{"trajectories", frames, j};
          open_object(cur, at);
          Box box{frames, j, 0, {0, 0, 0, 0}};
          bool has_tid = false, has_bbox = false;
          for (bool f3 = true; cur.next_key(sub_key, f3);) {
            if (json::is(sub_key, "tid")) {
              box.tid = read_int(cur, at, ".tid");
              has_tid = true;
            } else if (json::is(sub_key, "bbox")) {
              has_bbox = true;
              if (cur.peek() != '{') bad(at(".bbox"), "expected dict");
              bool c_has[4] = {false, false, false, false};
              cur.expect('{', "'{'");
              for (bool f4 = true; cur.next_key(field, f4);) {
                const int c = json::is(field, "xmin")   ? 0
                              : json::is(field, "ymin") ? 1
                              : json::is(field, "xmax") ? 2
                              : json::is(field, "ymax") ? 3
                                                        : 4;
                if (c == 4) {
                  cur.skip();
                  continue;
                }
                if (!cur.at_number()) bad(at(".bbox.") + std::string(field), "expected int/float");
                box.b[c] = cur.fast_double();
                c_has[c] = true;
              }
              for (int c = 0; c < 4; ++c) {
                if (!c_has[c]) bad(at(".bbox"), "missing a coordinate");
              }
            } else if (json::is(sub_key, "generated")) {
              const char k = cur.peek();
              if (!(cur.at_number() || k == 't' || k == 'f')) bad(at(".generated"), "expected 0/1");
              cur.skip();
            } else {
              cur.skip();
            }
          }
          if (!has_tid) bad(at(".tid"), "missing");
          if (!has_bbox) bad(at(".bbox"), "missing");
          if (!(std::isfinite(box.b[0]) && std::isfinite(box.b[1]) && std::isfinite(box.b[2]) &&
                std::isfinite(box.b[3])) ||
              box.b[2] < box.b[0] || box.b[3] < box.b[1]) {
            bad(at(".bbox"), "expected xmin <= xmax and ymin <= ymax");
          }
          boxes.push_back(box);
        }
      }
    } else if (json::is(key, "relation_instances")) {
      has[4] = true;
      rels.clear();
      open_list(cur, key);
      for (bool f1 = true; cur.next_item(f1);) {
        const Where at{"relation_instances", static_cast<int64_t>(rels.size()), -1};
        open_object(cur, at);
        Rel r{0, 0, 0, 0, ""};
        bool h[5] = {false, false, false, false, false};
        for (bool f2 = true; cur.next_key(sub_key, f2);) {
          if (json::is(sub_key, "subject_tid")) r.sub = read_int(cur, at, ".subject_tid"), h[0] = true;
          else if (json::is(sub_key, "object_tid")) r.obj = read_int(cur, at, ".object_tid"), h[1] = true;
          else if (json::is(sub_key, "predicate")) read_str(cur, at, ".predicate", r.predicate), h[2] = true;
          else if (json::is(sub_key, "begin_fid")) r.begin = read_int(cur, at, ".begin_fid"), h[3] = true;
          else if (json::is(sub_key, "end_fid")) r.end = read_int(cur, at, ".end_fid"), h[4] = true;
          else cur.skip();
        }
        static const char* names[5] = {"subject_tid", "object_tid", "predicate", "begin_fid", "end_fid"};
        for (int k = 0; k < 5; ++k) {
          if (!h[k]) bad(at((std::string(".") + names[k]).c_str()), "missing");
        }
        rels.push_back(std::move(r));
      }
    } else {
      cur.skip();
    }
  }
  cur.finish();
  static const char* required[5] = {"video_id", "frame_count", "subject/objects", "trajectories",
                                    "relation_instances"};
  for (int k = 0; k < 5; ++k) {
    if (!has[k]) bad(required[k], "missing");
  }
  if (frame_count < 0) bad("frame_count", "expected >= 0");
  if (frames > frame_count) bad("trajectories", "has more frames than frame_count");

  // Rows of the objects; boxes sorted by (row, frame) so that a relation's boxes are one contiguous run.
  const int64_t K = static_cast<int64_t>(tids.size());
  std::unordered_map<int64_t, int64_t> row_of;
  for (int64_t k = 0; k < K; ++k) {
    if (!row_of.emplace(tids[k], k).second) bad("subject/objects", "tid listed twice");
  }
  std::vector<std::tuple<int64_t, int64_t, int64_t>> order;  // (row, frame, box index)
  order.reserve(boxes.size());
  for (size_t i = 0; i < boxes.size(); ++i) {
    const auto it = row_of.find(boxes[i].tid);
    if (it == row_of.end()) {
      bad("trajectories[" + std::to_string(boxes[i].frame) + "][" + std::to_string(boxes[i].index) + "].tid",
          "tid is not listed in subject/objects");
    }
    order.emplace_back(it->second, boxes[i].frame, static_cast<int64_t>(i));
  }
  std::sort(order.begin(), order.end());
  for (size_t i = 1; i < order.size(); ++i) {
    if (std::get<0>(order[i]) == std::get<0>(order[i - 1]) && std::get<1>(order[i]) == std::get<1>(order[i - 1])) {
      bad("trajectories", "a tid has two boxes in one frame");
    }
  }
  TripletKey t;
  t.is_int[0] = t.is_int[1] = t.is_int[2] = false;
  std::unordered_map<std::string, int64_t> triplet_ids;
  for (size_t i = 0; i < rels.size(); ++i) {
    const Rel& r = rels[i];
    const Where at{"relation_instances", static_cast<int64_t>(i), -1};
    if (!(0 <= r.begin && r.begin < r.end && r.end <= frames)) bad(at(".begin_fid"), "expected 0 <= begin < end <= F");
    const int64_t len = r.end - r.begin;
    int64_t rows[2];
    for (int w = 0; w < 2; ++w) {
      const int64_t tid = w ? r.obj : r.sub;
      const char* name = w ? ".object_tid" : ".subject_tid";
      const auto it = row_of.find(tid);
      if (it == row_of.end()) bad(at(name), "tid is not listed in subject/objects");
      rows[w] = it->second;
      const auto lo = std::lower_bound(order.begin(), order.end(), std::make_tuple(rows[w], r.begin, int64_t(-1)));
      const int64_t start = lo - order.begin();
      const bool complete = start + len <= static_cast<int64_t>(order.size()) &&
                            std::get<0>(order[start + len - 1]) == rows[w] &&
                            std::get<1>(order[start]) == r.begin && std::get<1>(order[start + len - 1]) == r.end - 1;
      if (!complete) bad(at(name), "the tid has no box on some frame of the duration");
      for (int64_t f = 0; f < len; ++f) {
        const double* b = boxes[std::get<2>(order[start + f])].b;
        out.boxes.insert(out.boxes.end(), b, b + 4);
      }
    }
    t.part[0] = cats[rows[0]];
    t.part[1] = r.predicate;
    t.part[2] = cats[rows[1]];
    std::string key3;
    for (const std::string& p : t.part) key3 += std::to_string(p.size()) + ':' + p;
    const auto [it, fresh] = triplet_ids.emplace(key3, static_cast<int64_t>(out.triplets.size()));
    if (fresh) out.triplets.push_back(t);
    out.triplet.push_back(it->second);
    out.begin.push_back(r.begin);
    out.length.push_back(len);
    out.subject_tid.push_back(r.sub);
    out.object_tid.push_back(r.obj);
    out.box_offsets.push_back(static_cast<int64_t>(out.boxes.size() / 4));
  }
  return out;
}

}  // namespace uasan
