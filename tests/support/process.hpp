// Starts a real program for an integration test, with its output captured in a file, and stops
// it (SIGTERM, then SIGKILL after a grace period) when the object dies.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace citygate::test {

class Process {
  public:
    // Starts `argv[0]` with the arguments; stdout and stderr go to `log_file`.
    Process(std::vector<std::string> argv, std::filesystem::path log_file);
    ~Process();
    Process(const Process&) = delete;
    Process& operator=(const Process&) = delete;

    pid_t pid() const { return pid_; }
    const std::filesystem::path& log_file() const { return log_file_; }
    std::string log() const;

    // Sends a signal; returns false when the process is already gone.
    bool signal(int signo) const;

    // Waits for exit up to `timeout`; returns the exit status (or 128 + signal), or nothing when
    // it is still running.
    std::optional<int> wait_for(std::chrono::milliseconds timeout);

    // Waits until the log contains `needle`; returns the whole log line holding it, or nothing
    // on timeout or exit.
    std::optional<std::string> wait_for_log(const std::string& needle,
                                            std::chrono::milliseconds timeout);

  private:
    pid_t pid_ = -1;
    std::optional<int> exit_status_;
    std::filesystem::path log_file_;
};

// Resident memory of a running process in KiB (VmRSS from /proc), or -1 when it cannot be read.
long resident_kib(pid_t pid);

// Runs a command to completion through /bin/sh, returns its exit status and fills `output` with
// stdout and stderr.
int run_command(const std::string& command, std::string* output = nullptr);

}  // namespace citygate::test
