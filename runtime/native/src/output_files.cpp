#include "esam3/output_files.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <regex>

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "esam3/error.h"

namespace esam3 {
namespace fs = std::filesystem;

namespace {

// efficient_sam3/files.py's _TEMP_PATTERN: ".<name>.<pid>-<8 hex>.tmp..."
const std::regex kTempPattern(R"(^\.(.+)\.(\d+)-[0-9a-f]{8}\.tmp)");

fs::path folder_of(const fs::path& path) { return path.parent_path().empty() ? fs::path(".") : path.parent_path(); }

std::string system_error(int code) { return std::strerror(code); }

// 0666 minus the process umask (what open(path, O_CREAT, 0666) gives).
mode_t usual_file_mode() {
  const mode_t mask = umask(0);
  umask(mask);
  return 0666 & ~mask;
}

bool process_alive(const std::string& digits) {
  if (digits.size() > 9) {
    return true;  // beyond any pid: not a temp name of ours to judge
  }
  const pid_t pid = static_cast<pid_t>(std::stol(digits));
  if (pid == getpid() || kill(pid, 0) == 0) {
    return true;
  }
  return errno == EPERM;  // someone else's live process
}

}  // namespace

std::string temp_name_for(const std::string& path, const std::string& suffix) {
  const fs::path target(path);
  char random_hex[9];
  std::snprintf(random_hex, sizeof(random_hex), "%08x", static_cast<unsigned>(std::random_device{}()));
  const std::string name = "." + target.filename().string() + "." + std::to_string(getpid()) + "-" + random_hex + ".tmp" + suffix;
  return (folder_of(target) / name).string();
}

std::vector<std::string> remove_stale_temps(const std::string& directory) {
  std::vector<std::string> removed;
  std::error_code error;
  for (const fs::directory_entry& entry : fs::directory_iterator(directory, error)) {
    const std::string name = entry.path().filename().string();
    std::smatch match;
    if (!std::regex_search(name, match, kTempPattern) || process_alive(match[2].str())) {
      continue;
    }
    std::error_code ignored;
    if (entry.is_directory(ignored) && !entry.is_symlink(ignored)) {
      fs::remove_all(entry.path(), ignored);
    } else {
      fs::remove(entry.path(), ignored);
    }
    if (!ignored) {
      removed.push_back(entry.path().string());
    }
  }
  return removed;
}

void check_writable(const std::string& path, const std::string& what) {
  const fs::path target(path);
  const fs::path folder = folder_of(target);
  std::error_code error;
  if (!fs::is_directory(folder, error)) {
    throw Esam3Error(path + ": " + what + " folder " + folder.string() + " does not exist");
  }
  if (fs::is_directory(target, error)) {
    throw Esam3Error(path + ": " + what + " is a folder, expected a file path");
  }
  const std::string probe = temp_name_for(path, ".probe");
  const int fd = open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (fd < 0) {
    throw Esam3Error(path + ": cannot write the " + what + " (" + system_error(errno) + ")");
  }
  close(fd);
  unlink(probe.c_str());
}

std::string OutputLock::lock_path_for(const std::string& path) {
  const fs::path target(path);
  return (folder_of(target) / ("." + target.filename().string() + ".lock")).string();
}

OutputLock::OutputLock(const std::string& path) {
  const std::string lock_path = lock_path_for(path);
  fd_ = open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
  if (fd_ < 0) {
    throw Esam3Error(lock_path + ": cannot open the lock file (" + system_error(errno) + ")");
  }
  if (flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int code = errno;
    std::string holder(32, '\0');
    const ssize_t length = pread(fd_, holder.data(), holder.size(), 0);
    holder.resize(length > 0 ? static_cast<size_t>(length) : 0);
    holder.erase(holder.find_last_not_of(" \n") + 1);
    close(fd_);
    fd_ = -1;
    if (code == EWOULDBLOCK) {
      throw Esam3Error(path + ": another run (pid " + (holder.empty() ? "unknown" : holder) +
                       ") is writing this output; wait for it or choose another output");
    }
    throw Esam3Error(lock_path + ": cannot lock (" + system_error(code) + ")");
  }
  const std::string pid = std::to_string(getpid());
  if (ftruncate(fd_, 0) != 0 || pwrite(fd_, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    const int code = errno;
    flock(fd_, LOCK_UN);
    close(fd_);
    fd_ = -1;
    throw Esam3Error(lock_path + ": cannot write the lock file (" + system_error(code) + ")");
  }
}

OutputLock::~OutputLock() {
  if (fd_ >= 0) {
    const int emptied = ftruncate(fd_, 0);  // failing leaves a stale pid, which only a refused run prints
    (void)emptied;
    flock(fd_, LOCK_UN);
    close(fd_);
  }
}

StagedFile::StagedFile(const std::string& path, const std::string& suffix)
    : path_(path), temp_(temp_name_for(path, suffix)) {}

StagedFile::~StagedFile() {
  if (!committed_) {
    unlink(temp_.c_str());
  }
}

void StagedFile::write(const std::string& text, const std::string& what) {
  const int fd = open(temp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0) {
    throw Esam3Error(path_ + ": cannot write the " + what + " (" + system_error(errno) + ")");
  }
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t written = ::write(fd, text.data() + done, text.size() - done);
    if (written < 0 && errno == EINTR) {
      continue;
    }
    if (written < 0) {
      const int code = errno;
      close(fd);
      throw Esam3Error(path_ + ": cannot write the " + what + " (" + system_error(code) + ")");
    }
    done += static_cast<size_t>(written);
  }
  if (close(fd) != 0) {
    throw Esam3Error(path_ + ": cannot write the " + what + " (" + system_error(errno) + ")");
  }
}

void StagedFile::commit() {
  if (chmod(temp_.c_str(), usual_file_mode()) != 0 || std::rename(temp_.c_str(), path_.c_str()) != 0) {
    throw Esam3Error(path_ + ": cannot move the finished file into place (" + system_error(errno) + ")");
  }
  committed_ = true;
}

void write_file_atomically(const std::string& path, const std::string& text, const std::string& what) {
  StagedFile staged(path);
  staged.write(text, what);
  staged.commit();
}

}  // namespace esam3
