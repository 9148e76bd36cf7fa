// eval_json: the evaluator's files read straight into columns (uasan/evaluation/files.py has the Python side).
// * Relation files, the official formats: a prediction file {"version", "results": {video: [{triplet, score,
//   duration, sub_traj, obj_traj}]}} or a ground-truth file {video: [{triplet, duration, sub_traj, obj_traj,
//   ...}]}. One pass checks the whole document and every relation's fields and box counts, and remembers where
//   each trajectory starts; the box values are parsed only when asked for (JsonTrajSource), so the matching reads
//   no box it does not compare.
// * Annotation files (VidVRD / VidOR, one per video): the ground-truth relation instances as VidVRD-helper's
//   get_relation_insts builds them, boxes included.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "eval.h"

namespace uasan {

// A bad relation: names the video (has_video false: the document itself), the relation's index in its video's
// list (-1: the list itself) and the field ("" when none). The bindings add the file.
struct RelationFileError : std::invalid_argument {
  bool has_video;
  std::string video;
  int64_t index;
  std::string field;
  RelationFileError(bool has_v, std::string v, int64_t i, std::string f, const std::string& problem)
      : std::invalid_argument(problem), has_video(has_v), video(std::move(v)), index(i), field(std::move(f)) {}
};

// A triplet as read: three categories, each a JSON string (UTF-8) or an integer (its decimal text).
struct TripletKey {
  std::string part[3];
  bool is_int[3];
};

struct JsonRelations {
  std::vector<std::string> videos;  // video ids in file order
  std::vector<int64_t> offsets{0};  // (videos + 1,): relations of video v are [offsets[v], offsets[v + 1])
  std::vector<TripletKey> triplets;  // distinct triplets in order of appearance
  std::vector<int64_t> triplet, begin, length, traj_pos[2];  // per relation; traj_pos: byte offset of sub / obj
  std::vector<double> score;                                 // per relation (0 in ground-truth files)
  // prediction files: the top-level fields other than "results" whose value is a string ("version", and the
  // "split" / "mode" uasan.predict records), in file order
  std::vector<std::pair<std::string, std::string>> header;
};

// Memory-mapped files: their pages count in the process's resident set once read, although the page cache holds
// them. release_file_pages drops the whole pages within data[from, to) from this process's mappings (madvise
// MADV_DONTNEED; a no-op off POSIX): a later read faults them back in from the page cache, unchanged. Only for a
// read-only shared mapping of a file (what uasan/evaluation/files.py maps): on any other memory it would lose data,
// so every caller takes a flag that the Python side sets for its own mappings only.
void release_file_pages(const char* data, int64_t from, int64_t to);

// Releases the pages behind a forward pass over such a mapping, a chunk at a time (nothing when not enabled).
class PageReleaser {
 public:
  PageReleaser(const char* data, int64_t size, bool enabled) : data_(data), size_(size), enabled_(enabled) {}
  // The pass reached offset. A pass that goes back starts over from there: released pages that it reads again are
  // only faulted in again.
  void upto(int64_t offset) {
    if (!enabled_) return;
    if (offset < released_) {
      released_ = offset;
    } else if (offset - released_ >= kChunk) {
      release_file_pages(data_, released_, offset);
      released_ = offset;
    }
  }
  void all() {
    if (enabled_) release_file_pages(data_, 0, size_);
  }

 private:
  static constexpr int64_t kChunk = int64_t(16) << 20;
  const char* data_;
  int64_t size_, released_ = 0;
  bool enabled_;
};

// Reads a relation file held in data[0, size). predictions: the {"results": ...} prediction format with scores;
// else the ground-truth format. release_pages: data is a read-only file mapping (see release_file_pages) whose pages
// are released behind the pass and at its end. Throws json::SyntaxError or RelationFileError.
JsonRelations read_relation_file(const char* data, int64_t size, bool predictions, bool release_pages = false);

// Parses the `length` boxes of the trajectory at byte offset pos (as recorded by read_relation_file) into out
// (length, 4) and checks x2 >= x1, y2 >= y1; on a bad box throws std::invalid_argument naming the box.
void parse_trajectory(const char* data, int64_t size, int64_t pos, int64_t length, double* out);

// Trajectories of relation tables whose boxes are either rows of a (rows, 4) array (table rows 3 and 4 of the
// array interface: sub_row, obj_row) or JSON text (byte offsets, parsed on first use and cached).
class MixedTrajSource : public TrajSource {
 public:
  struct Side {
    const double* boxes = nullptr;  // array side
    int64_t rows = 0;
    const char* json = nullptr;  // JSON side
    int64_t json_size = 0;
    const int64_t* where[2] = {nullptr, nullptr};  // sub / obj: first row, or byte offset
    const int64_t* length = nullptr;
    int64_t count = 0;
    bool release_pages = false;  // JSON side: a read-only file mapping (see release_file_pages)
  };
  MixedTrajSource(const Side& gt, const Side& pred);
  // Checks the array sides (rows in range, boxes finite with x2 >= x1) and, when all, parses and checks every JSON
  // trajectory (without keeping it: the matching parses again the few it compares).
  void check(bool all);
  const double* get(bool is_pred, int64_t r, int which) override;
  // Frees the trajectories parsed for the video and releases its pages of a mapped file.
  void video_done(int64_t gt_begin, int64_t gt_end, int64_t pred_begin, int64_t pred_end) override;

  // Which relation the last bad JSON trajectory belonged to (for the caller's message).
  bool bad_is_pred = false;
  int64_t bad_relation = -1;
  int bad_which = 0;

 private:
  Side side_[2];
  std::vector<std::vector<double>> cache_[2][2];
};

// The ground-truth relation instances of one annotation file: relation r has triplet (category of subject_tid,
// predicate, category of object_tid), frames [begin, begin + length), and boxes rows box_offsets[r] ..: its
// length subject boxes, then its length object boxes.
struct AnnotationRelations {
  std::string video_id;
  std::vector<TripletKey> triplets;
  std::vector<int64_t> triplet, begin, length, subject_tid, object_tid, box_offsets{0};
  std::vector<double> boxes;  // (rows, 4)
};

// Reads one VidVRD / VidOR annotation (DESIGN §3) with the checks of uasan.data.read_annotation; throws
// std::invalid_argument with a short "field 'x': problem" message or json::SyntaxError.
AnnotationRelations read_annotation_file(const char* data, int64_t size);

}  // namespace uasan
