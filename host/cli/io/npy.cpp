#include "npy.hpp"

#include <fcntl.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>
#include <new>
#include <random>
#include <thread>
#include <utility>

#include "quarry/error.hpp"
#include "signals.hpp"

namespace quarry::io {

namespace {

constexpr char kMagic[] = "\x93NUMPY";

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw InvalidInput(path + ": " + what);
}

// Reads `count` bytes at `offset`; returns fewer only at the end of the file.
std::size_t read_at(int fd, void* out, std::size_t count, std::size_t offset,
                    const std::string& path) {
  std::size_t done = 0;
  while (done < count) {
    const ssize_t r = ::pread(fd, static_cast<char*>(out) + done, count - done,
                              static_cast<off_t>(offset + done));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) fail(path, std::string("cannot read: ") + std::strerror(errno));
    if (r == 0) break;
    done += static_cast<std::size_t>(r);
  }
  return done;
}

// Unmaps a mapping. Dropping the page-table entries of a large mapping is most of what unmapping
// costs (about 4 ms for 400 MB), and munmap does it on one thread: large mappings are first
// released in parallel slices (MADV_DONTNEED, under the shared lock), one per CPU this process
// may use.
void unmap(void* map, std::size_t bytes) {
  constexpr std::size_t kSlice = std::size_t{32} << 20;
  cpu_set_t cpus;
  const int cpu_count = ::sched_getaffinity(0, sizeof cpus, &cpus) == 0 ? CPU_COUNT(&cpus) : 1;
  const std::size_t parts = std::min<std::size_t>(std::max(cpu_count, 1), bytes / kSlice);
  if (parts > 1) {
    const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    const std::size_t step = (bytes / parts + page - 1) / page * page;
    auto release = [&](std::size_t part) {
      const std::size_t begin = part * step;
      if (begin < bytes)
        ::madvise(static_cast<char*>(map) + begin, std::min(step, bytes - begin), MADV_DONTNEED);
    };
    std::vector<std::thread> helpers;
    try {
      for (std::size_t part = 1; part < parts; ++part) helpers.emplace_back(release, part);
    } catch (const std::system_error&) {
      // No thread to spare: munmap below does the rest.
    }
    release(0);
    for (std::thread& helper : helpers) helper.join();
  }
  ::munmap(map, bytes);
}

// Closes the descriptor when it goes out of scope.
struct FileDescriptor {
  int fd;
  ~FileDescriptor() { ::close(fd); }
};

}  // namespace

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (std::size_t i = 0; i < shape.size(); ++i)
    s += std::to_string(shape[i]) + (shape.size() == 1 ? "," : i + 1 < shape.size() ? ", " : "");
  return s + ")";
}

NpyArray NpyArray::open(const std::string& path, NpyRead how) {
  // Without O_NONBLOCK, opening a FIFO waits for a writer, possibly forever; it is refused below
  // as not a regular file. (O_NONBLOCK means nothing to a regular file.)
  const FileDescriptor file{::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK)};
  if (file.fd < 0) fail(path, std::string("cannot open: ") + std::strerror(errno));
  struct stat st {};
  if (::fstat(file.fd, &st) != 0) fail(path, std::string("cannot stat: ") + std::strerror(errno));
  if (S_ISDIR(st.st_mode)) fail(path, "is a directory");
  if (!S_ISREG(st.st_mode))
    fail(path, S_ISFIFO(st.st_mode)
                   ? "not a regular file (a FIFO or pipe); save the array to a file"
                   : "not a regular file");
  const auto file_bytes = static_cast<std::size_t>(st.st_size);

  // The header, read by itself: its length is checked before it is read (a file can claim a
  // 4 GB header).
  std::vector<unsigned char> start(12 + 4 * kMaxNpyHeaderLength);
  start.resize(read_at(file.fd, start.data(), start.size(), 0, path));
  NpyHeader header;
  try {
    header = parse_npy_header(start.data(), start.size());
  } catch (const InvalidInput& e) {
    fail(path, e.what());
  }
  const std::size_t present = file_bytes - std::min(file_bytes, header.data_offset);
  if (present < header.data_bytes)
    fail(path, "truncated: shape " + shape_text(header.shape) + " needs " +
                   std::to_string(header.data_bytes) + " bytes of data, the file has " +
                   std::to_string(present));
  if (present > header.data_bytes)
    fail(path, "has " + std::to_string(present - header.data_bytes) +
                   " bytes after the array's data; the file is damaged");

  NpyArray array;
  array.dtype_ = header.dtype;
  array.shape_ = std::move(header.shape);
  if (how.into_memory || header.data_offset % dtype_size(header.dtype) != 0) {
    // NumPy pads the header so that the data is aligned; a file whose data is not cannot be read
    // in place (misaligned loads), so it is copied.
    try {
      array.copy_ = std::make_unique_for_overwrite<std::byte[]>(header.data_bytes);
    } catch (const std::bad_alloc&) {
      throw OutOfMemory(path + ": cannot read " + std::to_string(header.data_bytes) +
                        " bytes into memory");
    }
    if (read_at(file.fd, array.copy_.get(), header.data_bytes, header.data_offset, path) !=
        header.data_bytes)
      fail(path, "the file was truncated while it was being read");
    array.data_ = array.copy_.get();
    return array;
  }
  void* map = ::mmap(nullptr, file_bytes, PROT_READ, MAP_PRIVATE, file.fd, 0);
  if (map == MAP_FAILED) {
    const int e = errno;
    const std::string what = path + ": cannot map: " + std::strerror(e);
    // Address space or memory ran out: a resource failure, not bad input.
    if (e == ENOMEM || e == EAGAIN) throw OutOfMemory(what);
    throw InvalidInput(what);
  }
  array.map_ = map;
  array.map_bytes_ = file_bytes;
  array.data_ = static_cast<const unsigned char*>(map) + header.data_offset;
  return array;
}

NpyArray::NpyArray(NpyArray&& other) noexcept {
  *this = std::move(other);
}

NpyArray& NpyArray::operator=(NpyArray&& other) noexcept {
  if (this != &other) {
    if (map_ != nullptr) unmap(map_, map_bytes_);
    map_ = std::exchange(other.map_, nullptr);
    map_bytes_ = std::exchange(other.map_bytes_, 0);
    copy_ = std::move(other.copy_);
    data_ = std::exchange(other.data_, nullptr);
    dtype_ = other.dtype_;
    shape_ = std::move(other.shape_);
  }
  return *this;
}

NpyArray::~NpyArray() {
  if (map_ != nullptr) unmap(map_, map_bytes_);
}

int64_t NpyArray::elements() const {
  // The data's size in bytes fits (checked on open), so the product does unless a dimension is 0.
  if (std::find(shape_.begin(), shape_.end(), 0) != shape_.end()) return 0;
  int64_t n = 1;
  for (int64_t d : shape_) n *= d;
  return n;
}

std::string NpyArray::shape_string() const {
  return shape_text(shape_);
}

void write_file_atomically(const std::string& path, const std::string& contents) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  // A new file gets mode 0666 less the umask, as any program's new file; a file replaced keeps its
  // mode. The temporary file is created with that mode by open() itself (mkstemp's is 0600).
  struct stat existing {};
  const bool replacing = ::stat(path.c_str(), &existing) == 0 && S_ISREG(existing.st_mode);
  static const char kNameChars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  std::random_device random;
  std::string temporary;
  int fd = -1;
  for (int attempt = 0; fd < 0 && attempt < 100; ++attempt) {
    std::string name(".");  // appended piece by piece: GCC 12 warns about "." + name (-Wrestrict)
    name += target.filename().string();
    name += ".tmp-";
    for (int i = 0; i < 6; ++i) name += kNameChars[random() % (sizeof kNameChars - 1)];
    temporary = (dir / name).string();
    fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && errno != EEXIST) break;
  }
  if (fd < 0) throw Error(path + ": cannot create output: " + std::strerror(errno));
  const PartialOutput partial(temporary);  // removed if a signal ends the process now
  auto fail = [&](int error) {
    if (fd >= 0) ::close(fd);
    ::unlink(temporary.c_str());
    throw Error(path + ": cannot write output: " + std::strerror(error));
  };
  std::size_t written = 0;
  while (written < contents.size()) {
    const ssize_t w = ::write(fd, contents.data() + written, contents.size() - written);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) fail(w < 0 ? errno : EIO);
    written += static_cast<std::size_t>(w);
  }
  if (replacing && ::fchmod(fd, existing.st_mode & 07777) != 0) fail(errno);
  const int closed = ::close(fd);
  fd = -1;
  if (closed != 0 || ::rename(temporary.c_str(), path.c_str()) != 0) fail(errno);
}

void save_npy(const std::string& path, const void* data, const std::string& descr,
              const std::vector<int64_t>& shape) {
  int64_t elements = 1;
  for (int64_t d : shape) elements *= d;
  std::string header =
      "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape_text(shape) + ", }";
  // Magic (6) + version (2) + length (2) + header + '\n', padded to a multiple of 64.
  const std::size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header += '\n';
  const std::size_t item = descr.back() == '8' ? 8 : (descr.back() == '4' ? 4 : 2);
  std::string file;
  file.reserve(10 + header.size() + elements * item);
  file.append(kMagic, 6);
  file.push_back('\x01');
  file.push_back('\x00');
  file.push_back(static_cast<char>(header.size() & 0xff));
  file.push_back(static_cast<char>(header.size() >> 8));
  file += header;
  file.append(static_cast<const char*>(data), elements * item);
  write_file_atomically(path, file);
}

}  // namespace quarry::io
