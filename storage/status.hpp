// A must-check status for storage operations, and a value-or-status result.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace citygate::storage {

class [[nodiscard]] Status {
  public:
    enum class Code { ok, invalid_argument, not_found, io_error, corruption, limit_exceeded, busy };

    Status() = default;
    static Status ok() { return {}; }
    static Status error(Code code, std::string message) { return Status(code, std::move(message)); }

    bool is_ok() const { return code_ == Code::ok; }
    Code code() const { return code_; }
    const std::string& message() const { return message_; }

  private:
    Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}
    Code code_ = Code::ok;
    std::string message_;
};

// Either a value or a failed status.
template <typename T>
class [[nodiscard]] Result {
  public:
    Result(T value) : state_(std::move(value)) {}
    Result(Status status) : state_(std::move(status)) {}

    bool is_ok() const { return std::holds_alternative<T>(state_); }
    const Status& status() const {
        static const Status ok_status;
        return is_ok() ? ok_status : std::get<Status>(state_);
    }
    T& value() { return std::get<T>(state_); }
    const T& value() const { return std::get<T>(state_); }

  private:
    std::variant<T, Status> state_;
};

}  // namespace citygate::storage
