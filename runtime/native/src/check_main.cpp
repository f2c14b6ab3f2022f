// esam3_check: runs the library's pure pieces on cases from a JSON file, so tests can compare them with
// the Python references (pycocotools for RLE, scipy for the assignment).
//   esam3_check CASES.json  ->  stdout JSON
// CASES: {"rle": [{"height", "width", "ones": [row-major indices of foreground pixels]}],
//         "assignment": [{"rows", "cols", "cost": [row-major], "maximize": bool}]}
// Output: {"rle": [counts string per case], "assignment": [[[row, col], ...] per case]}
#include <cstdio>
#include <fstream>

#include <nlohmann/json.hpp>

#include "esam3/assignment.h"
#include "esam3/rle.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: esam3_check CASES.json\n");
    return 2;
  }
  try {
    std::ifstream stream(argv[1]);
    const nlohmann::json cases = nlohmann::json::parse(stream);
    nlohmann::json result = {{"rle", nlohmann::json::array()}, {"assignment", nlohmann::json::array()}};
    for (const nlohmann::json& item : cases.value("rle", nlohmann::json::array())) {
      cv::Mat mask = cv::Mat::zeros(item["height"].get<int>(), item["width"].get<int>(), CV_8U);
      for (const nlohmann::json& index : item["ones"]) {
        mask.data[index.get<size_t>()] = 1;
      }
      result["rle"].push_back(esam3::encode_rle(mask));
    }
    for (const nlohmann::json& item : cases.value("assignment", nlohmann::json::array())) {
      const auto pairs = esam3::linear_sum_assignment(item["cost"].get<std::vector<double>>(), item["rows"].get<int>(),
                                                      item["cols"].get<int>(), item["maximize"].get<bool>());
      result["assignment"].push_back(pairs);
    }
    std::printf("%s\n", result.dump().c_str());
    return 0;
  } catch (const std::exception& err) {
    std::fprintf(stderr, "error: %s\n", err.what());
    return 2;
  }
}
