"""Parses a Prometheus text exposition with prometheus_client's own parser (what a
scraper would accept) and prints its families as JSON:
{"families": {name: {"type": t, "samples": [{"name", "labels", "value"}]}}}.
Exits non-zero (with the parser's error) when the text does not parse.

    python3 parse_prometheus.py FILE
"""
import json
import math
import sys

from prometheus_client.parser import text_string_to_metric_families


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as f:
        text = f.read()
    families = {}
    for family in text_string_to_metric_families(text):
        if family.name in families:
            print(f"family {family.name} appears twice", file=sys.stderr)
            return 2
        families[family.name] = {
            "type": family.type,
            "samples": [
                {"name": s.name, "labels": dict(s.labels),
                 "value": None if math.isinf(s.value) or math.isnan(s.value) else s.value}
                for s in family.samples
            ],
        }
    json.dump({"families": families}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
