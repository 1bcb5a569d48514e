// .npy reading and writing.

#include <chrono>
#include <filesystem>
#include <fstream>

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

// float64 (np.save of a Python list of floats) is read; each array's consumer says whether it
// takes it (costs and pools do).
TEST(Npy, ReadsFloat64) {
  const std::vector<double> data = {0.25, 0.75, 0.5, 0.5};
  const std::string path = temp_path("f64.npy");
  io::save_npy(path, data.data(), "<f8", {2, 2});
  const io::NpyArray a = io::NpyArray::open(path);
  EXPECT_EQ(a.dtype(), DType::f64);
  EXPECT_EQ(static_cast<const double*>(a.data())[1], 0.75);
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
        Case{"object", "|O", false, "object"}, Case{"fortran", "<f4", true, "Fortran"}}) {
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

// The header is a Python dict literal, read as np.load reads it (ast.literal_eval, then NumPy's
// checks). Each case was checked against NumPy 2.4: accepted with this shape, or refused.
TEST(Npy, ParsesTheHeaderAsNumPyDoes) {
  struct Case {
    std::string dict;
    int major;
    std::vector<int64_t> shape;  // empty with `refused`
    DType dtype = DType::f32;
    bool refused = false;
  };
  const std::string rest = "'fortran_order': False, 'shape': (3, 4)}";
  const std::vector<Case> cases = {
      {"{'descr': '<f4', " + rest, 1, {3, 4}},
      // A duplicated key: the last one counts.
      {"{'descr': '<f4', 'descr': '<i4', " + rest, 1, {3, 4}, DType::i32},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (9,), 'shape': (3, 4)}", 3, {3, 4}},
      // Key text inside a string is not a key.
      {"{'descr': \"'shape': (99,)\", " + rest, 1, {}, DType::f32, true},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (3,), 'x': \"'shape': (1,)\"}",
       1,
       {},
       DType::f32,
       true},
      // Malformed or mistyped values.
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (1000,, 10)}", 1, {}, DType::f32, true},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': [3, 4]}", 1, {}, DType::f32, true},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (3.0, 4)}", 1, {}, DType::f32, true},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (-3, 4)}", 1, {}, DType::f32, true},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (--3, 4)}", 1, {}, DType::f32, true},
      // Found by the fuzzer: the sign of an integer beyond int64 (negating INT64_MIN).
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (-9223372036854775808, 1)}",
       1,
       {},
       DType::f32,
       true},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (9223372036854775808, 1)}",
       1,
       {},
       DType::f32,
       true},
      {"{'descr': '<f4', 'fortran_order': 0, 'shape': (3, 4)}", 1, {}, DType::f32, true},
      {"{'descr': '<f4', 'fortran_order': False}", 1, {}, DType::f32, true},
      {"{'descr': '<f4', 'x': 1, " + rest, 1, {}, DType::f32, true},
      {"{'descr': '<f4', " + rest + " {}", 1, {}, DType::f32, true},
      {"{'descr': '<f4' " + rest, 1, {}, DType::f32, true},
      {"{'descr': <f4, " + rest, 1, {}, DType::f32, true},
      // Python's other spellings of the same literals.
      {"{\"descr\": \"<f4\", " + rest, 1, {3, 4}},
      {"{'descr': '<' 'f4', " + rest, 1, {3, 4}},
      {"{'descr': '\\x3cf4', " + rest, 1, {3, 4}},
      {"{'descr': u'<f4', " + rest, 1, {3, 4}},
      {"{'descr': b'<f4', " + rest, 1, {}, DType::f32, true},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (0x3, 0o4, 0b1, 1_0,)}",
       1,
       {3, 4, 1, 10}},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (True, (4))}", 1, {1, 4}},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (007, 4)}", 1, {}, DType::f32, true},
      {"{'descr': '<f4',  # a comment\n 'fortran_order': False, 'shape': (3, 4)}", 3, {3, 4}},
      // Python 2's long integers, in the versions Python 2 wrote.
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (3L, 4L)}", 1, {3, 4}},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (3L, 4L)}", 3, {}, DType::f32, true},
      // Indentation: Python refuses it; NumPy's Python 2 filter forgives some of it.
      {"\n  {'descr': '<f4', " + rest, 1, {}, DType::f32, true},
      {"{'descr': '<f4', " + rest + "\n\t", 3, {}, DType::f32, true},
      {"{'descr': '<f4', " + rest + "\n\t", 2, {3, 4}},
      {"[('descr', '<f4')]", 1, {}, DType::f32, true},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE("version " + std::to_string(c.major) + ": " + c.dict);
    const std::string path = temp_path("header.npy");
    int64_t elements = 1;
    for (int64_t d : c.shape) elements *= d;
    const std::vector<int32_t> data(c.refused ? 0 : elements, 0);  // 4-byte elements, as f4 and i4
    write_npy_raw(path, c.major, c.dict, data.data(), data.size() * sizeof(int32_t));
    if (c.refused) {
      EXPECT_THROW(io::NpyArray::open(path), InvalidInput);
      continue;
    }
    try {
      const auto a = io::NpyArray::open(path);
      EXPECT_EQ(a.shape(), c.shape);
      EXPECT_EQ(a.dtype(), c.dtype);
    } catch (const InvalidInput& e) {
      ADD_FAILURE() << e.what();
    }
  }
}

// Version 3 headers are UTF-8 (strictly), versions 1 and 2 Latin-1; only version x.0 exists.
TEST(Npy, HeaderEncodingsAndVersions) {
  const std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4)} # \xe9\n";
  const std::vector<float> data(12, 0.5f);
  for (int major : {1, 3}) {
    write_npy_raw(temp_path("latin1.npy"), major, dict, data.data(), data.size() * 4);
    if (major == 1)
      EXPECT_NO_THROW(io::NpyArray::open(temp_path("latin1.npy")));
    else
      EXPECT_THROW(io::NpyArray::open(temp_path("latin1.npy")), InvalidInput) << "not UTF-8";
  }
  write_npy(temp_path("v11.npy"), data, "<f4", {3, 4});
  {
    std::fstream f(temp_path("v11.npy"), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(7);
    f.put(1);  // version 1.1
  }
  EXPECT_THROW(io::NpyArray::open(temp_path("v11.npy")), InvalidInput);
}

// NumPy refuses headers longer than 10,000 characters (max_header_size); so does quarry, before
// reading them: a 4 GB header claimed by a small sparse file costs nothing.
TEST(Npy, RefusesOverlongHeadersBeforeReadingThem) {
  const std::string path = temp_path("long_header.npy");
  {
    std::ofstream out(path, std::ios::binary);
    out.write("\x93NUMPY\x02\x00\xf0\xff\xff\xff{", 13);
  }
  std::filesystem::resize_file(path, 12 + 0xfffffff0ull);  // sparse: nothing written
  const auto start = std::chrono::steady_clock::now();
  try {
    io::NpyArray::open(path);
    ADD_FAILURE() << "accepted";
  } catch (const InvalidInput& e) {
    EXPECT_NE(std::string(e.what()).find("the header is 4294967280 bytes long"), std::string::npos)
        << e.what();
  }
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 1.0);
  std::filesystem::remove(path);
  // 10,000 characters are allowed.
  std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4)}";
  dict.append(10000 - 1 - dict.size(), ' ');
  const std::vector<float> data(12, 0.5f);
  {
    std::ofstream out(temp_path("h10000.npy"), std::ios::binary);
    out.write("\x93NUMPY\x01\x00\x10\x27", 10);  // 10,000
    out << dict << '\n';
    out.write(reinterpret_cast<const char*>(data.data()), 48);
  }
  EXPECT_NO_THROW(io::NpyArray::open(temp_path("h10000.npy")));
}

// NumPy aligns the data to 64 bytes; a file whose data starts at an odd offset is still read,
// correctly, into aligned memory (reading floats in place would be misaligned loads).
TEST(Npy, ReadsDataThatIsNotAligned) {
  const std::vector<float> values = {0.125f, 0.875f, 0.25f, 0.75f, 1.0f, 0.0f};
  std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2)}";
  dict.append(60 - dict.size(), ' ');
  dict += '\n';  // 61 characters: the data starts at 10 + 61 = 71, not a multiple of 4
  const std::string path = temp_path("unaligned.npy");
  {
    std::ofstream out(path, std::ios::binary);
    out.write("\x93NUMPY\x01\x00", 8);
    out.put(static_cast<char>(dict.size()));
    out.put(0);
    out << dict;
    out.write(reinterpret_cast<const char*>(values.data()), 24);
  }
  const auto a = io::NpyArray::open(path);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a.data()) % alignof(float), 0u);
  EXPECT_EQ(std::memcmp(a.data(), values.data(), 24), 0);
  Resources cpu(Device::cpu);
  ScoreOptions opt;
  opt.measure = Measure::least_confidence;
  const auto scores = score(cpu, PoolView::matrix(a.data(), DType::f32, 3, 2), opt);
  EXPECT_EQ(scores, (std::vector<float>{0.125f, 0.25f, 0.0f}));
}

TEST(Npy, AtomicWriteLeavesNoFileWhenTheDirectoryIsMissing) {
  const std::string path = temp_path("no_such_dir/out.npy");
  const std::vector<int64_t> v = {1};
  EXPECT_THROW(io::save_npy(path, v.data(), "<i8", {1}), Error);
  EXPECT_FALSE(std::filesystem::exists(path));
}

}  // namespace
}  // namespace quarry::test
