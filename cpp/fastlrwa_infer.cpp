// fastlrwa-infer: run a student exported by `fastlrwa export` (an AOTInductor package) on raw float32 input.
//
//   fastlrwa-infer MODEL.pt2 N C H W < input.f32 > logits.f32
//
// stdin holds exactly N*C*H*W little-endian float32 values in NCHW order, already normalised with the
// mean/std of DIR/meta.json; stdout receives N*K little-endian float32 logits, row-major [N, K].
// The package runs on the device it was compiled for (its AOTI_DEVICE_KEY metadata: cpu or cuda).
//
// Exit codes: 0 success, 2 bad arguments or bad input on stdin, 1 the model cannot be loaded or run,
// or the logits cannot be written. Every failure prints one "fastlrwa-infer: error: ..." line on stderr.

#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/torch.h>

#include <algorithm>
#include <bit>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

// Inputs and outputs are copied byte for byte between the streams and float tensors.
static_assert(std::endian::native == std::endian::little, "fastlrwa-infer reads and writes little-endian float32");

namespace {

using Metadata = std::unordered_map<std::string, std::string>;

constexpr int kExitOk = 0;
constexpr int kExitModel = 1;
constexpr int kExitUsage = 2;
constexpr const char* kUsage = "usage: fastlrwa-infer MODEL.pt2 N C H W < input.f32 > logits.f32";
constexpr const char* kDeviceKey = "AOTI_DEVICE_KEY";
// Written by fastlrwa.export.aot.runner_metadata: "C,H,W", and the fixed batch size or "" for any.
constexpr const char* kImageShapeKey = "fastlrwa.image_shape";
constexpr const char* kBatchKey = "fastlrwa.batch";
constexpr const char* kReexport = "pass a model.pt2 written by fastlrwa export";

// Thrown for a problem the caller can fix; carries the exit code.
struct Failure {
  int exit_code;
  std::string message;
};

// torch's messages can span lines (c10::Error adds a C++ backtrace); the first line says what went wrong.
std::string first_line(const std::exception& error) {
  const auto* torch_error = dynamic_cast<const c10::Error*>(&error);
  const std::string text = torch_error != nullptr ? torch_error->what_without_backtrace() : error.what();
  return text.substr(0, text.find('\n'));
}

std::string join(const std::vector<int64_t>& sizes, std::string_view separator) {
  std::string text;
  for (size_t index = 0; index < sizes.size(); ++index) {
    text += (index == 0 ? "" : std::string(separator)) + std::to_string(sizes[index]);
  }
  return text;
}

bool parse_positive(std::string_view text, int64_t& value) {
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  return error == std::errc() && end == text.data() + text.size() && value >= 1;
}

int64_t parse_dimension(std::string_view name, std::string_view text) {
  int64_t value = 0;
  if (!parse_positive(text, value)) {
    throw Failure{kExitUsage, std::string(name) + " must be a positive integer, got '" + std::string(text) + "'; " +
                                  kUsage};
  }
  return value;
}

const std::string& metadata_entry(const Metadata& metadata, const char* key) {
  const auto found = metadata.find(key);
  if (found == metadata.end()) {
    throw Failure{kExitModel, std::string("the package has no '") + key + "' entry; " + kReexport};
  }
  return found->second;
}

// The [C, H, W] the package was exported for.
std::vector<int64_t> exported_image_shape(const Metadata& metadata) {
  const std::string& text = metadata_entry(metadata, kImageShapeKey);
  std::vector<int64_t> shape;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = std::min(text.find(',', start), text.size());
    int64_t size = 0;
    if (!parse_positive(std::string_view(text).substr(start, comma - start), size)) {
      throw Failure{kExitModel, std::string("the package's '") + kImageShapeKey + "' is '" + text + "'; " + kReexport};
    }
    shape.push_back(size);
    start = comma + 1;
  }
  return shape;
}

// The compiled model does not check its input's shape, so a wrong C, H or W would read past the data.
void check_shape(const Metadata& metadata, const std::vector<int64_t>& shape) {
  const std::vector<int64_t> image_shape(shape.begin() + 1, shape.end());
  const std::vector<int64_t> expected = exported_image_shape(metadata);
  if (image_shape != expected) {
    throw Failure{kExitUsage, "the model takes C H W = " + join(expected, " ") + " but got " + join(image_shape, " ") +
                                  "; pass the input_shape of meta.json"};
  }
  const std::string& batch = metadata_entry(metadata, kBatchKey);
  if (!batch.empty() && batch != std::to_string(shape[0])) {
    throw Failure{kExitUsage, "the model was exported for a fixed batch of " + batch + " but N = " +
                                  std::to_string(shape[0]) + "; pass N = " + batch + " or export without --batch"};
  }
}

// The element count N*C*H*W, refused when its byte size would overflow.
int64_t element_count(const std::vector<int64_t>& shape) {
  constexpr int64_t kMaxElements = std::numeric_limits<int64_t>::max() / static_cast<int64_t>(sizeof(float));
  int64_t count = 1;
  for (const int64_t size : shape) {
    if (count > kMaxElements / size) {
      throw Failure{kExitUsage, "the input shape " + join(shape, " ") + " is too large; check N C H W"};
    }
    count *= size;
  }
  return count;
}

// Reads exactly N*C*H*W float32 values from stdin and refuses short or over-long input, since either
// means the shape on the command line does not describe the data.
torch::Tensor read_input(const std::vector<int64_t>& shape) {
  const int64_t count = element_count(shape);
  torch::Tensor input = torch::empty(shape, torch::dtype(torch::kFloat32));
  const size_t expected_bytes = static_cast<size_t>(count) * sizeof(float);
  const size_t got_bytes = std::fread(input.data_ptr<float>(), 1, expected_bytes, stdin);
  if (std::ferror(stdin)) {
    throw Failure{kExitUsage, "cannot read the input from stdin"};
  }
  if (got_bytes != expected_bytes) {
    throw Failure{kExitUsage, "stdin ended after " + std::to_string(got_bytes) + " bytes but N*C*H*W = " +
                                  std::to_string(count) + " float32 values need " + std::to_string(expected_bytes) +
                                  "; pass the shape the input was written with"};
  }
  if (std::fgetc(stdin) != EOF) {
    throw Failure{kExitUsage, "stdin holds more than N*C*H*W = " + std::to_string(count) +
                                  " float32 values; pass the shape the input was written with"};
  }
  return input;
}

std::unique_ptr<torch::inductor::AOTIModelPackageLoader> load_package(const std::string& package_path) {
  if (!std::filesystem::is_regular_file(package_path)) {
    throw Failure{kExitUsage, "'" + package_path + "' is not a file; " + kReexport};
  }
  try {
    return std::make_unique<torch::inductor::AOTIModelPackageLoader>(package_path);
  } catch (const std::exception& error) {
    throw Failure{kExitModel, "cannot load '" + package_path + "' as an AOTInductor package (" + first_line(error) +
                                  "); " + kReexport};
  }
}

torch::Tensor run_model(torch::inductor::AOTIModelPackageLoader& loader, const torch::Tensor& input) {
  const torch::Device device(metadata_entry(loader.get_metadata(), kDeviceKey));
  std::vector<torch::Tensor> outputs;
  try {
    outputs = loader.run({input.to(device)});
  } catch (const std::exception& error) {
    throw Failure{kExitModel, "running the model failed (" + first_line(error) + ")"};
  }
  if (outputs.size() != 1 || outputs[0].dim() != 2 || outputs[0].size(0) != input.size(0)) {
    throw Failure{kExitModel, std::string("the package does not return one [N, K] logits tensor; ") + kReexport};
  }
  return outputs[0].to(torch::kCPU, torch::kFloat32).contiguous();
}

void write_output(const torch::Tensor& logits) {
  const size_t count = static_cast<size_t>(logits.numel());
  if (std::fwrite(logits.const_data_ptr<float>(), sizeof(float), count, stdout) != count ||
      std::fflush(stdout) != 0) {
    throw Failure{kExitModel, "cannot write the logits to stdout"};
  }
}

int run(int argc, char** argv) {
  if (argc != 6) {
    throw Failure{kExitUsage, "expected 5 arguments, got " + std::to_string(argc - 1) + "; " + kUsage};
  }
  const std::vector<int64_t> shape = {parse_dimension("N", argv[2]), parse_dimension("C", argv[3]),
                                      parse_dimension("H", argv[4]), parse_dimension("W", argv[5])};
  // The package is checked before stdin is read, so a wrong path or shape fails before a large input is sent.
  const auto loader = load_package(argv[1]);
  check_shape(loader->get_metadata(), shape);
  write_output(run_model(*loader, read_input(shape)));
  return kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const Failure& failure) {
    std::fprintf(stderr, "fastlrwa-infer: error: %s\n", failure.message.c_str());
    return failure.exit_code;
  } catch (const std::exception& error) {
    // Anything else: out of memory for the input, or a device the package names but this machine lacks.
    std::fprintf(stderr, "fastlrwa-infer: error: %s\n", first_line(error).c_str());
    return kExitModel;
  }
}
