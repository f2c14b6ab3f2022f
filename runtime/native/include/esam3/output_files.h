// Output files that appear whole or not at all; the C++ side of efficient_sam3/files.py, with the same names
// so Python and C++ runs clean up after each other and exclude each other:
// - temp files beside the target, ".<name>.<pid>-<8 hex>.tmp<suffix>", created with mode 0666 & ~umask;
//   a temp whose process is gone (a run killed with SIGKILL) is removed by the next run (remove_stale_temps);
// - ".<name>.lock" beside an output: an exclusive flock held for the whole run, holding the runner's pid, so a
//   second run aimed at the same output refuses at once, naming the process that writes it.
#pragma once

#include <string>
#include <vector>

namespace esam3 {

// ".<name>.<pid>-<8 hex>.tmp<suffix>" beside `path` (suffix keeps an extension a writer needs: ".mp4").
std::string temp_name_for(const std::string& path, const std::string& suffix = "");

// Remove temp files and folders in `directory` whose writer process is gone; returns their paths.
std::vector<std::string> remove_stale_temps(const std::string& directory);

// Throw Esam3Error("<path>: ...") unless `path`'s folder exists and takes a new file (`what` names the output).
void check_writable(const std::string& path, const std::string& what);

// Exclusive non-blocking flock on ".<name>.lock" beside `path` for the object's lifetime.
class OutputLock {
 public:
  explicit OutputLock(const std::string& path);
  ~OutputLock();
  OutputLock(const OutputLock&) = delete;
  OutputLock& operator=(const OutputLock&) = delete;
  static std::string lock_path_for(const std::string& path);

 private:
  int fd_ = -1;
};

// A temp name beside `path`; commit() renames it over `path`. Destroyed uncommitted, the temp file is removed.
class StagedFile {
 public:
  explicit StagedFile(const std::string& path, const std::string& suffix = "");
  ~StagedFile();
  StagedFile(const StagedFile&) = delete;
  StagedFile& operator=(const StagedFile&) = delete;
  const std::string& path() const { return path_; }
  const std::string& temp() const { return temp_; }
  // Write `text` to the temp file (created 0666 & ~umask); a failed write (disk full) throws naming path().
  void write(const std::string& text, const std::string& what);
  void commit();

 private:
  std::string path_;
  std::string temp_;
  bool committed_ = false;
};

// Write `text` to `path` atomically (StagedFile, then commit).
void write_file_atomically(const std::string& path, const std::string& text, const std::string& what);

}  // namespace esam3
