#include "tests/support/process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace citygate::test {

Process::Process(std::vector<std::string> argv, std::filesystem::path log_file)
    : log_file_(std::move(log_file)) {
    if (argv.empty()) throw std::invalid_argument("Process needs a program");
    std::vector<char*> args;
    for (auto& arg : argv)
        args.push_back(arg.data());
    args.push_back(nullptr);

    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
        int fd = ::open(log_file_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            ::dup2(fd, STDOUT_FILENO);
            ::dup2(fd, STDERR_FILENO);
            ::close(fd);
        }
        ::execv(args[0], args.data());
        ::_exit(127);
    }
}

Process::~Process() {
    if (exit_status_) return;
    signal(SIGTERM);
    if (!wait_for(std::chrono::seconds(10))) {
        signal(SIGKILL);
        wait_for(std::chrono::seconds(5));
    }
}

std::string Process::log() const {
    std::ifstream in(log_file_);
    std::stringstream content;
    content << in.rdbuf();
    return content.str();
}

bool Process::signal(int signo) const {
    if (exit_status_) return false;
    return ::kill(pid_, signo) == 0;
}

std::optional<int> Process::wait_for(std::chrono::milliseconds timeout) {
    if (exit_status_) return exit_status_;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (true) {
        int status = 0;
        pid_t done = ::waitpid(pid_, &status, WNOHANG);
        if (done == pid_) {
            exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            return exit_status_;
        }
        if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
}

std::optional<std::string> Process::wait_for_log(const std::string& needle,
                                                 std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
        std::istringstream lines(log());
        for (std::string line; std::getline(lines, line);) {
            if (line.find(needle) != std::string::npos) return line;
        }
        if (wait_for(std::chrono::milliseconds(0))) return std::nullopt;  // it exited
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return std::nullopt;
}

int run_command(const std::string& command, std::string* output) {
    FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
    if (pipe == nullptr) return -1;
    std::string collected;
    char buffer[4096];
    while (std::size_t n = std::fread(buffer, 1, sizeof buffer, pipe))
        collected.append(buffer, n);
    int status = ::pclose(pipe);
    if (output) *output = std::move(collected);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

long resident_kib(pid_t pid) {
    std::ifstream status("/proc/" + std::to_string(pid) + "/status");
    for (std::string line; std::getline(status, line);) {
        if (line.starts_with("VmRSS:")) return std::stol(line.substr(6));
    }
    return -1;
}

}  // namespace citygate::test
