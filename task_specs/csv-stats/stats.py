"""Summary statistics of every numeric column of a CSV file (standard library only)."""

import csv
import json
import math
import statistics
import sys


def main(src: str, dst: str) -> int:
    columns: dict[str, list[float]] = {}
    rows = 0
    with open(src, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        for row in reader:
            rows += 1
            for name, value in row.items():
                try:
                    number = float(value)
                except (TypeError, ValueError):
                    continue
                if math.isfinite(number):
                    columns.setdefault(name, []).append(number)
    summary = {"rows": rows, "columns": {}}
    for name, values in sorted(columns.items()):
        summary["columns"][name] = {
            "count": len(values),
            "mean": round(statistics.fmean(values), 6),
            "median": round(statistics.median(values), 6),
            "stdev": round(statistics.stdev(values), 6) if len(values) > 1 else 0.0,
            "min": min(values),
            "max": max(values),
        }
    with open(dst, "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2, sort_keys=True)
        f.write("\n")
    print(f"summarised {rows} rows, {len(columns)} numeric columns")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
