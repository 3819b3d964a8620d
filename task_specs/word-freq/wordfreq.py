"""Word frequencies of inputs/a.txt and inputs/b.txt (standard library only).

Writes outputs/counts.csv (word, count in a, count in b), outputs/shared.json (the top shared
words) and outputs/report.txt (a short human summary).
"""

import argparse
import collections
import csv
import json
import re
import sys

WORD = re.compile(r"[a-z']+")


def count(path: str) -> collections.Counter[str]:
    with open(path, encoding="utf-8", errors="replace") as f:
        return collections.Counter(WORD.findall(f.read().lower()))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    a, b = count("inputs/a.txt"), count("inputs/b.txt")
    words = sorted(set(a) | set(b), key=lambda w: (-(a[w] + b[w]), w))
    with open("outputs/counts.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["word", "a", "b"])
        for w in words:
            writer.writerow([w, a[w], b[w]])
    shared = [w for w in words if a[w] and b[w]][: args.top]
    with open("outputs/shared.json", "w", encoding="utf-8") as f:
        json.dump({w: {"a": a[w], "b": b[w]} for w in shared}, f, indent=2)
        f.write("\n")
    with open("outputs/report.txt", "w", encoding="utf-8") as f:
        f.write(f"a.txt: {sum(a.values())} words, {len(a)} distinct\n")
        f.write(f"b.txt: {sum(b.values())} words, {len(b)} distinct\n")
        f.write(f"shared distinct words: {len(set(a) & set(b))}\n")
        f.write("top shared: " + ", ".join(shared[:10]) + "\n")
    print(f"counted {len(words)} distinct words")
    return 0


if __name__ == "__main__":
    sys.exit(main())
