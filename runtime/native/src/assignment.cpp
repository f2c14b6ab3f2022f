#include "esam3/assignment.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "esam3/error.h"

namespace esam3 {
namespace {

constexpr double kInfinity = std::numeric_limits<double>::infinity();

// Dual variables and the partial matching of a wide problem (rows <= cols).
struct AssignmentState {
  int rows;
  int cols;
  const std::vector<double>& cost;  // [rows, cols]
  std::vector<double> row_dual;
  std::vector<double> col_dual;
  std::vector<int> col_of_row;
  std::vector<int> row_of_col;
  // Scratch of one augmentation.
  std::vector<double> path_cost;
  std::vector<int> path_row;
  std::vector<char> row_seen;
  std::vector<char> col_seen;
  std::vector<int> remaining;
};

// Dijkstra over reduced costs from row `start` to the nearest free column; returns that column and the
// path length, and leaves the tree in path_row / row_seen / col_seen.
int shortest_augmenting_path(AssignmentState& s, int start, double* path_length) {
  std::fill(s.row_seen.begin(), s.row_seen.end(), 0);
  std::fill(s.col_seen.begin(), s.col_seen.end(), 0);
  std::fill(s.path_cost.begin(), s.path_cost.end(), kInfinity);
  int num_remaining = s.cols;
  for (int k = 0; k < s.cols; ++k) {
    s.remaining[k] = s.cols - 1 - k;  // last column first: a constant matrix gives the identity
  }
  double reached = 0.0;
  int row = start;
  while (true) {
    s.row_seen[row] = 1;
    int best_slot = -1;
    double lowest = kInfinity;
    for (int k = 0; k < num_remaining; ++k) {
      const int col = s.remaining[k];
      const double reduced = reached + s.cost[static_cast<size_t>(row) * s.cols + col] - s.row_dual[row] - s.col_dual[col];
      if (reduced < s.path_cost[col]) {
        s.path_row[col] = row;
        s.path_cost[col] = reduced;
      }
      if (s.path_cost[col] < lowest || (s.path_cost[col] == lowest && s.row_of_col[col] == -1)) {
        lowest = s.path_cost[col];
        best_slot = k;
      }
    }
    if (best_slot < 0 || lowest == kInfinity) {
      throw Esam3Error("linear_sum_assignment: the cost matrix is infeasible");
    }
    reached = lowest;
    const int col = s.remaining[best_slot];
    s.col_seen[col] = 1;
    s.remaining[best_slot] = s.remaining[--num_remaining];
    if (s.row_of_col[col] == -1) {
      *path_length = reached;
      return col;
    }
    row = s.row_of_col[col];
  }
}

}  // namespace

std::vector<std::pair<int, int>> linear_sum_assignment(const std::vector<double>& cost, int rows, int cols,
                                                       bool maximize) {
  if (rows < 0 || cols < 0 || cost.size() != static_cast<size_t>(rows) * cols) {
    throw Esam3Error("linear_sum_assignment: cost has " + std::to_string(cost.size()) + " values, expected " +
                     std::to_string(rows) + " x " + std::to_string(cols));
  }
  if (rows == 0 || cols == 0) {
    return {};
  }
  const bool transposed = cols < rows;  // a tall problem is solved as its wide transpose
  const int wide_rows = transposed ? cols : rows;
  const int wide_cols = transposed ? rows : cols;
  std::vector<double> wide(cost.size());
  for (int r = 0; r < rows; ++r) {
    for (int c = 0; c < cols; ++c) {
      const double value = cost[static_cast<size_t>(r) * cols + c];
      if (!std::isfinite(value)) {
        throw Esam3Error("linear_sum_assignment: the cost matrix holds a non-finite value");
      }
      const size_t index = transposed ? static_cast<size_t>(c) * rows + r : static_cast<size_t>(r) * cols + c;
      wide[index] = maximize ? -value : value;
    }
  }

  AssignmentState s{wide_rows,
                    wide_cols,
                    wide,
                    std::vector<double>(wide_rows, 0.0),
                    std::vector<double>(wide_cols, 0.0),
                    std::vector<int>(wide_rows, -1),
                    std::vector<int>(wide_cols, -1),
                    std::vector<double>(wide_cols),
                    std::vector<int>(wide_cols, -1),
                    std::vector<char>(wide_rows),
                    std::vector<char>(wide_cols),
                    std::vector<int>(wide_cols)};
  for (int current = 0; current < wide_rows; ++current) {
    double path_length = 0.0;
    const int sink = shortest_augmenting_path(s, current, &path_length);
    s.row_dual[current] += path_length;
    for (int r = 0; r < wide_rows; ++r) {
      if (s.row_seen[r] && r != current) {
        s.row_dual[r] += path_length - s.path_cost[s.col_of_row[r]];
      }
    }
    for (int c = 0; c < wide_cols; ++c) {
      if (s.col_seen[c]) {
        s.col_dual[c] -= path_length - s.path_cost[c];
      }
    }
    int col = sink;  // flip the matching along the path back to `current`
    while (true) {
      const int row = s.path_row[col];
      s.row_of_col[col] = row;
      std::swap(s.col_of_row[row], col);
      if (row == current) {
        break;
      }
    }
  }

  std::vector<std::pair<int, int>> pairs;
  pairs.reserve(wide_rows);
  for (int r = 0; r < wide_rows; ++r) {
    pairs.emplace_back(transposed ? s.col_of_row[r] : r, transposed ? r : s.col_of_row[r]);
  }
  std::sort(pairs.begin(), pairs.end());  // rows ascending, as scipy returns them
  return pairs;
}

}  // namespace esam3
