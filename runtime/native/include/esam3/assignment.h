// Rectangular linear sum assignment (the Hungarian problem), with the results of
// scipy.optimize.linear_sum_assignment: the shortest augmenting path method of
// D. F. Crouse, "On implementing 2D rectangular assignment algorithms" (IEEE TAES 52(4), 2016),
// with scipy's tie-breaking (columns scanned from the last, a free column wins a tie), so equal-cost
// optima resolve the same way. O(n^3); the tracker's matrices are a few rows wide.
#pragma once

#include <utility>
#include <vector>

namespace esam3 {

// cost: row-major [rows, cols]; finite values. Returns min(rows, cols) (row, col) pairs, rows
// ascending, that minimise (or with `maximize`, maximise) the summed cost.
std::vector<std::pair<int, int>> linear_sum_assignment(const std::vector<double>& cost, int rows, int cols,
                                                       bool maximize);

}  // namespace esam3
