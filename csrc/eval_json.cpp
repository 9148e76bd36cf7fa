#include "eval_json.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>
#include <unistd.h>
#endif

#include "common.h"
#include "json.h"

namespace uasan {

namespace {

using json::Cursor;
using json::Number;

// The raw JSON text of the value that ran from `start` to the cursor, for messages (at most ~60 bytes).
std::string snippet(const Cursor& cur, int64_t start) {
  const int64_t end = cur.offset();
  const char* d = cur.data();
  while (start < end && (d[start] == ' ' || d[start] == '\n' || d[start] == '\r' || d[start] == '\t')) ++start;
  std::string s(d + start, d + std::min(end, start + 60));
  if (end - start > 60) s += "...";
  return s;
}

// Python's repr of a float (shortest round trip, ".0" for integral values), for messages.
std::string py_float(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof(buf), v);
  std::string s(buf, r.ptr);
  if (s.find_first_of(".en") == std::string::npos) s += ".0";
  return s;
}

// Interns triplets: equal ids <=> equal triplets (strings and integers never equal each other, as in Python).
class TripletTable {
 public:
  explicit TripletTable(std::vector<TripletKey>& out) : out_(out) {}
  int64_t intern(const TripletKey& t) {
    std::string key;
    for (int i = 0; i < 3; ++i) {
      key += t.is_int[i] ? 'i' : 's';
      key += std::to_string(t.part[i].size());
      key += ':';
      key += t.part[i];
    }
    const auto [it, fresh] = ids_.emplace(std::move(key), static_cast<int64_t>(out_.size()));
    if (fresh) out_.push_back(t);
    return it->second;
  }

 private:
  std::vector<TripletKey>& out_;
  std::unordered_map<std::string, int64_t> ids_;
};

// One field of a relation as read: present, and the first problem found in its value ("" if none).
struct Field {
  bool present = false;
  std::string error;
  void reset() {
    present = true;
    error.clear();
  }
};

void read_triplet(Cursor& cur, TripletKey& t, Field& f) {
  const int64_t start = cur.offset();
  if (cur.peek() != '[') {
    const std::string kind = cur.kind();
    cur.skip();
    f.error = "expected [subject, predicate, object], got " + kind + " " + snippet(cur, start);
    return;
  }
  cur.expect('[', "'['");
  int n = 0;
  bool ok = true;
  for (bool first = true; cur.next_item(first); ++n) {
    if (n < 3 && cur.peek() == '"') {
      cur.string(&t.part[n]);
      t.is_int[n] = false;
      continue;
    }
    if (n < 3 && cur.at_number()) {
      const Number num = cur.number();
      int64_t v;
      if (num.integer && !num.nonfinite && num.to_int64(v)) {
        t.part[n] = std::to_string(v);  // normalised: -0 and 0 are one category, as in Python
        t.is_int[n] = true;
        continue;
      }
    } else {
      cur.skip();
    }
    ok = false;
  }
  if (n != 3 || !ok) {
    f.error = "expected [subject, predicate, object] of category names (strings or integers), got " +
              snippet(cur, start);
  }
}

void read_duration(Cursor& cur, int64_t& b, int64_t& e, Field& f) {
  const int64_t start = cur.offset();
  int64_t v[2] = {0, 0};
  int n = 0;
  bool ok = cur.peek() == '[';
  if (!ok) {
    cur.skip();
  } else {
    cur.expect('[', "'['");
    for (bool first = true; cur.next_item(first); ++n) {
      if (cur.at_number()) {
        const Number num = cur.number();
        if (n < 2 && num.to_int64(v[n])) continue;
      } else {
        cur.skip();
      }
      ok = false;
    }
  }
  b = v[0];
  e = v[1];
  if (!ok || n != 2 || !(0 <= b && b < e)) {
    f.error = "expected integer frames 0 <= begin < end, got " + snippet(cur, start);
  }
}

// Checks the shape of a trajectory (a list of [x1, y1, x2, y2] lists of numbers) without converting the numbers.
void read_traj(Cursor& cur, int64_t& pos, int64_t& count, Field& f) {
  count = 0;
  if (cur.peek() != '[') {
    f.error = std::string("expected a list of [x1, y1, x2, y2] boxes, got ") + cur.kind();
    cur.skip();
    return;
  }
  pos = cur.offset();
  cur.expect('[', "'['");
  for (bool first = true; cur.next_item(first); ++count) {
    if (cur.box4()) continue;  // the common case, "[x1, y1, x2, y2]" of plain numbers
    if (cur.peek() != '[') {
      if (f.error.empty()) {
        f.error = "expected a list of [x1, y1, x2, y2] boxes, but box " + std::to_string(count) + " is " + cur.kind();
      }
      cur.skip();
      continue;
    }
    const int64_t start = cur.offset();
    cur.expect('[', "'['");
    int k = 0;
    bool numbers = true, finite = true;
    for (bool first_c = true; cur.next_item(first_c); ++k) {
      if (cur.at_number()) {
        finite = !cur.number().nonfinite && finite;
      } else {
        numbers = false;
        cur.skip();
      }
    }
    if (f.error.empty() && (k != 4 || !numbers)) {
      f.error = "expected a list of [x1, y1, x2, y2] boxes of numbers, but box " + std::to_string(count) + " is " +
                snippet(cur, start);
    } else if (f.error.empty() && !finite) {
      f.error = "expected finite coordinates, but box " + std::to_string(count) + " is " + snippet(cur, start);
    }
  }
}

void read_score(Cursor& cur, double& s, Field& f) {
  const int64_t start = cur.offset();
  if (!cur.at_number()) {
    const std::string kind = cur.kind();
    cur.skip();
    f.error = "expected a real number, got " + kind + " " + snippet(cur, start);
    return;
  }
  s = cur.number().to_double();
  if (!std::isfinite(s)) f.error = "expected a finite number, got " + snippet(cur, start);
}

class RelationReader {
 public:
  RelationReader(Cursor& cur, bool with_score, JsonRelations& out, PageReleaser& pages)
      : cur_(cur), with_score_(with_score), out_(out), triplets_(out.triplets), pages_(pages) {}

  // The {video: [relation, ...]} object at the cursor.
  void videos() {
    std::unordered_set<std::string> seen;
    std::string_view key;
    cur_.expect('{', "'{'");
    for (bool first = true; cur_.next_key(key, first);) {
      const std::string vid(key);
      if (!seen.insert(vid).second) throw RelationFileError(true, vid, -1, "", "video listed twice");
      if (cur_.peek() != '[') {
        throw RelationFileError(true, vid, -1, "", std::string("expected a list of relations, got ") + cur_.kind());
      }
      cur_.expect('[', "'['");
      int64_t i = 0;
      for (bool first_r = true; cur_.next_item(first_r); ++i) relation(vid, i);
      out_.videos.push_back(vid);
      out_.offsets.push_back(static_cast<int64_t>(out_.triplet.size()));
      pages_.upto(cur_.offset());  // nothing behind the cursor is read again by this pass
    }
  }

 private:
  void relation(const std::string& vid, int64_t i) {
    if (cur_.peek() != '{') {
      throw RelationFileError(true, vid, i, "", std::string("expected a relation dict, got ") + cur_.kind());
    }
    Field ft, fd, fs, fo, fsc;
    TripletKey t;
    int64_t b = 0, e = 0, pos[2] = {0, 0}, count[2] = {0, 0};
    double score = 0.0;
    cur_.expect('{', "'{'");
    for (bool first = true; cur_.next_key(key_, first);) {
      if (json::is(key_, "triplet")) {
        ft.reset();
        read_triplet(cur_, t, ft);
      } else if (json::is(key_, "duration")) {
        fd.reset();
        read_duration(cur_, b, e, fd);
      } else if (json::is(key_, "sub_traj")) {
        fs.reset();
        read_traj(cur_, pos[0], count[0], fs);
      } else if (json::is(key_, "obj_traj")) {
        fo.reset();
        read_traj(cur_, pos[1], count[1], fo);
      } else if (json::is(key_, "score") && with_score_) {
        fsc.reset();
        read_score(cur_, score, fsc);
      } else {
        cur_.skip();
      }
    }
    // The order of uasan.evaluation.relations.parse_relation: missing fields, then each field's value.
    const std::pair<const char*, Field*> fields[5] = {
        {"triplet", &ft}, {"duration", &fd}, {"sub_traj", &fs}, {"obj_traj", &fo}, {"score", &fsc}};
    const int n_fields = with_score_ ? 5 : 4;
    for (int k = 0; k < n_fields; ++k) {
      if (!fields[k].second->present) {
        throw RelationFileError(true, vid, i, "", std::string("missing field '") + fields[k].first + "'");
      }
    }
    for (int k = 0; k < 2; ++k) {
      const Field& f = *fields[k].second;
      if (!f.error.empty()) throw RelationFileError(true, vid, i, fields[k].first, f.error);
    }
    for (int w = 0; w < 2; ++w) {
      Field& f = w ? fo : fs;
      const char* name = w ? "obj_traj" : "sub_traj";
      if (f.error.empty() && count[w] != e - b) {
        f.error = "expected one box per frame of the duration (" + std::to_string(e - b) + "), but got " +
                  std::to_string(count[w]);
      }
      if (!f.error.empty()) throw RelationFileError(true, vid, i, name, f.error);
    }
    if (with_score_ && !fsc.error.empty()) throw RelationFileError(true, vid, i, "score", fsc.error);
    out_.triplet.push_back(triplets_.intern(t));
    out_.begin.push_back(b);
    out_.length.push_back(e - b);
    out_.score.push_back(score);
    out_.traj_pos[0].push_back(pos[0]);
    out_.traj_pos[1].push_back(pos[1]);
  }

  Cursor& cur_;
  bool with_score_;
  JsonRelations& out_;
  TripletTable triplets_;
  PageReleaser& pages_;
  std::string_view key_;
};

}  // namespace

void release_file_pages(const char* data, int64_t from, int64_t to) {
#if defined(__unix__) || defined(__APPLE__)
  static const int64_t page = static_cast<int64_t>(sysconf(_SC_PAGESIZE));
  if (page <= 0) return;
  const auto addr = reinterpret_cast<uintptr_t>(data);
  const uintptr_t lo = (addr + static_cast<uintptr_t>(from) + page - 1) / page * page;
  const uintptr_t hi = (addr + static_cast<uintptr_t>(to)) / page * page;
  if (hi > lo) madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_DONTNEED);  // advice: a failure changes nothing
#else
  (void)data;
  (void)from;
  (void)to;
#endif
}

JsonRelations read_relation_file(const char* data, int64_t size, bool predictions, bool release_pages) {
  Cursor cur(data, size);
  JsonRelations out;
  PageReleaser pages(data, size, release_pages);
  if (!predictions) {
    if (cur.peek() != '{' && cur.peek() != '\0') {
      const std::string kind = cur.kind();
      cur.skip();  // a syntax error in the document comes first
      cur.finish();
      throw RelationFileError(false, "", -1, "", "expected an object mapping video id -> ground-truth relations, got " +
                                                     kind);
    }
    RelationReader(cur, false, out, pages).videos();
    cur.finish();
    pages.all();
    return out;
  }
  const char* no_results = "expected an object with a 'results' field (video id -> predicted relations)";
  if (cur.peek() != '{' && cur.peek() != '\0') {
    cur.skip();
    cur.finish();
    throw RelationFileError(false, "", -1, "", no_results);
  }
  bool found = false;
  std::string_view key;
  std::vector<std::pair<std::string, std::string>> header;
  cur.expect('{', "'{'");
  for (bool first = true; cur.next_key(key, first);) {
    if (!json::is(key, "results")) {
      if (cur.peek() == '"') {
        std::pair<std::string, std::string> field{std::string(key), std::string()};  // key is only valid until here
        cur.string(&field.second);
        header.push_back(std::move(field));
      } else {
        cur.skip();
      }
      continue;
    }
    if (cur.peek() != '{') {
      const std::string kind = cur.kind();
      cur.skip();
      while (cur.next_key(key, first)) cur.skip();
      cur.finish();
      throw RelationFileError(false, "", -1, "results", "expected an object, got " + kind);
    }
    out = JsonRelations();  // a repeated key: the last one counts, as in json.load
    found = true;
    RelationReader(cur, true, out, pages).videos();
  }
  cur.finish();
  if (!found) throw RelationFileError(false, "", -1, "", no_results);
  out.header = std::move(header);
  pages.all();  // the evaluation reads back (page faults) only the trajectories it compares
  return out;
}

void parse_trajectory(const char* data, int64_t size, int64_t pos, int64_t length, double* out) {
  Cursor cur(data, size);
  cur.seek(pos);
  cur.expect('[', "'['");
  bool first = true;
  for (int64_t j = 0; j < length; ++j) {
    if (!cur.next_item(first)) fail("parse_trajectory", "the trajectory at byte ", pos, " changed since it was read");
    cur.expect('[', "'['");
    double* d = out + 4 * j;
    for (int c = 0; c < 4; ++c) {
      if (c) cur.expect(',', "','");
      d[c] = cur.fast_double();
    }
    cur.expect(']', "']'");
    if (!(std::isfinite(d[0]) && std::isfinite(d[1]) && std::isfinite(d[2]) && std::isfinite(d[3]))) {
      throw std::invalid_argument("expected finite coordinates, but box " + std::to_string(j) + " is [" +
                                  py_float(d[0]) + ", " + py_float(d[1]) + ", " + py_float(d[2]) + ", " +
                                  py_float(d[3]) + "]");
    }
    if (d[2] < d[0] || d[3] < d[1]) {
      throw std::invalid_argument("expected boxes with x2 >= x1 and y2 >= y1, but box " + std::to_string(j) + " is [" +
                                  py_float(d[0]) + ", " + py_float(d[1]) + ", " + py_float(d[2]) + ", " +
                                  py_float(d[3]) + "]");
    }
  }
}

MixedTrajSource::MixedTrajSource(const Side& gt, const Side& pred) : side_{gt, pred} {
  for (int t = 0; t < 2; ++t) {
    if (side_[t].json) {
      for (int w = 0; w < 2; ++w) cache_[t][w].resize(side_[t].count);
    }
  }
}

void MixedTrajSource::check(bool all) {
  for (int t = 0; t < 2; ++t) {
    const Side& s = side_[t];
    const char* arg = t ? "prediction" : "groundtruth";
    if (s.json) {
      if (!all) continue;
      // Every trajectory parsed and checked, none kept (that would hold every box of the file in memory).
      std::vector<double> scratch;
      PageReleaser pages(s.json, s.json_size, s.release_pages);
      for (int64_t r = 0; r < s.count; ++r) {
        scratch.resize(4 * s.length[r]);
        for (int w = 0; w < 2; ++w) {
          try {
            parse_trajectory(s.json, s.json_size, s.where[w][r], s.length[r], scratch.data());
          } catch (const std::invalid_argument&) {
            bad_is_pred = t == 1;
            bad_relation = r;
            bad_which = w;
            throw;
          }
        }
        pages.upto(std::min(s.where[0][r], s.where[1][r]));
      }
      pages.all();
      continue;
    }
    check_boxes("eval_relations", t ? "pred_boxes" : "gt_boxes", s.boxes, s.rows);
    for (int64_t r = 0; r < s.count; ++r) {
      for (int w = 0; w < 2; ++w) {
        const int64_t row = s.where[w][r];
        if (row < 0 || row > s.rows - s.length[r]) {
          fail("eval_relations", "expected ", arg, " relation ", r, " box rows within [0, ", s.rows,
               "), but got rows starting at ", row, " for ", s.length[r], " frames");
        }
      }
    }
  }
}

void MixedTrajSource::video_done(int64_t gt_begin, int64_t gt_end, int64_t pred_begin, int64_t pred_end) {
  const int64_t range[2][2] = {{gt_begin, gt_end}, {pred_begin, pred_end}};
  for (int t = 0; t < 2; ++t) {
    const Side& s = side_[t];
    if (!s.json || range[t][1] <= range[t][0]) continue;
    int64_t lo = s.json_size, hi = 0;
    for (int64_t r = range[t][0]; r < range[t][1]; ++r) {
      for (int w = 0; w < 2; ++w) {
        std::vector<double>().swap(cache_[t][w][r]);
        lo = std::min(lo, s.where[w][r]);
        hi = std::max(hi, s.where[w][r]);
      }
    }
    // A video's relations are one run of the file (its list); the pages from its first trajectory to the start of
    // its last one are its own (another video's relation there would only be faulted in again).
    if (s.release_pages) release_file_pages(s.json, lo, hi);
  }
}

const double* MixedTrajSource::get(bool is_pred, int64_t r, int which) {
  const Side& s = side_[is_pred];
  if (!s.json) return s.boxes + 4 * s.where[which][r];
  std::vector<double>& c = cache_[is_pred][which][r];
  if (c.empty()) {
    c.resize(4 * s.length[r]);
    try {
      parse_trajectory(s.json, s.json_size, s.where[which][r], s.length[r], c.data());
    } catch (const std::invalid_argument&) {
      c.clear();
      bad_is_pred = is_pred;
      bad_relation = r;
      bad_which = which;
      throw;
    }
  }
  return c.data();
}

}  // namespace uasan
