// .npy reading and writing.

#include <filesystem>

#include "npy.hpp"
#include "npy_files.hpp"
#include "test_util.hpp"

namespace quarry::test {
namespace {

std::string temp_path(const std::string& name) {
  return (std::filesystem::path(::testing::TempDir()) / ("quarry_npy_" + name)).string();
}

TEST(Npy, ReadsEveryFormatVersion) {
  const std::vector<float> data = {0.25f, 0.75f, 0.5f, 0.5f, 1.0f, 0.0f};
  for (int major : {1, 2, 3}) {
    const std::string path = temp_path("v" + std::to_string(major) + ".npy");
    write_npy(path, data, "<f4", {3, 2}, major);
    const auto a = io::NpyArray::open(path);
    EXPECT_EQ(a.dtype(), DType::f32);
    EXPECT_EQ(a.shape(), (std::vector<int64_t>{3, 2}));
    EXPECT_EQ(std::memcmp(a.data(), data.data(), data.size() * 4), 0);
  }
}

TEST(Npy, ReadsHalfAndIntegerDtypes) {
  const std::vector<uint16_t> half = {0x3c00, 0x0000};
  write_npy(temp_path("f2.npy"), half, "<f2", {1, 2});
  EXPECT_EQ(io::NpyArray::open(temp_path("f2.npy")).dtype(), DType::f16);
  const std::vector<int32_t> votes = {0, 1, -1, 2};
  write_npy(temp_path("i4.npy"), votes, "<i4", {2, 2});
  EXPECT_EQ(io::NpyArray::open(temp_path("i4.npy")).dtype(), DType::i32);
  const std::vector<int64_t> votes64 = {0, 1};
  write_npy(temp_path("i8.npy"), votes64, "<i8", {1, 2});
  EXPECT_EQ(io::NpyArray::open(temp_path("i8.npy")).dtype(), DType::i64);
}

TEST(Npy, RoundTripsWhatItWrites) {
  const std::vector<int64_t> indices = {5, 3, 9};
  const std::string path = temp_path("roundtrip.npy");
  io::save_npy(path, indices.data(), "<i8", {3});
  const auto a = io::NpyArray::open(path);
  EXPECT_EQ(a.dtype(), DType::i64);
  EXPECT_EQ(a.shape(), (std::vector<int64_t>{3}));
  EXPECT_EQ(std::memcmp(a.data(), indices.data(), 24), 0);
  EXPECT_EQ(a.shape_string(), "(3,)");
}

// Each broken file must be refused with a message that names the problem.
TEST(Npy, RefusesBrokenFilesWithAClearMessage) {
  const std::vector<float> data(6, 0.5f);
  struct Case {
    std::string name, descr;
    bool fortran;
    std::string expect;
  };
  for (const Case& c :
       {Case{"bigendian", ">f4", false, "big-endian"}, Case{"complex", "<c8", false, "complex"},
        Case{"object", "|O", false, "object"}, Case{"float64", "<f8", false, "float64"},
        Case{"fortran", "<f4", true, "Fortran"}}) {
    const std::string path = temp_path(c.name + ".npy");
    write_npy(path, data, c.descr, {3, 2}, 1, c.fortran);
    try {
      io::NpyArray::open(path);
      ADD_FAILURE() << c.name << " was accepted";
    } catch (const InvalidInput& e) {
      EXPECT_NE(std::string(e.what()).find(c.expect), std::string::npos) << e.what();
    }
  }
  // Truncated: the header promises more data than the file holds.
  write_npy(temp_path("trunc.npy"), data, "<f4", {4, 2});
  EXPECT_THROW(io::NpyArray::open(temp_path("trunc.npy")), InvalidInput);
  // A shape whose element count overflows 64 bits: 2^32 * 2^32 * 4 bytes would wrap to 0, the
  // size of the data present, and the array would claim rows it does not have.
  write_npy(temp_path("overflow.npy"), std::vector<float>{}, "<f4", {4294967296, 4294967296});
  try {
    io::NpyArray::open(temp_path("overflow.npy"));
    ADD_FAILURE() << "an overflowing shape was accepted";
  } catch (const InvalidInput& e) {
    EXPECT_NE(std::string(e.what()).find("too large"), std::string::npos) << e.what();
  }
  write_npy(temp_path("overflow2.npy"), std::vector<float>{}, "<f4", {4611686018427387904, 4});
  EXPECT_THROW(io::NpyArray::open(temp_path("overflow2.npy")), InvalidInput);
  // Not an npy file at all.
  { std::ofstream(temp_path("text.npy")) << "hello, this is not numpy\n"; }
  EXPECT_THROW(io::NpyArray::open(temp_path("text.npy")), InvalidInput);
  EXPECT_THROW(io::NpyArray::open(temp_path("does_not_exist.npy")), InvalidInput);
}

TEST(Npy, AtomicWriteLeavesNoFileWhenTheDirectoryIsMissing) {
  const std::string path = temp_path("no_such_dir/out.npy");
  const std::vector<int64_t> v = {1};
  EXPECT_THROW(io::save_npy(path, v.data(), "<i8", {1}), Error);
  EXPECT_FALSE(std::filesystem::exists(path));
}

}  // namespace
}  // namespace quarry::test
