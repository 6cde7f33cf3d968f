// A directory under the system temp dir, removed with everything in it when the object dies.
#pragma once

#include <filesystem>
#include <string_view>

namespace citygate::test {

class TempDir {
  public:
    explicit TempDir(std::string_view prefix = "citygate-test");
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;

    const std::filesystem::path& path() const { return path_; }

  private:
    std::filesystem::path path_;
};

}  // namespace citygate::test
