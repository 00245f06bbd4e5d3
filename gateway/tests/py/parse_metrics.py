"""Parses a /metrics exposition (read from stdin) with the Prometheus project's own
parsers (prometheus_client from PyPI) and prints every sample as JSON lines:
{"name", "labels", "value", "type"}. The OpenMetrics parser is strict (it requires
`# EOF`, valid names, types and escaping), so a page it accepts is a page Prometheus
scrapes; the classic text-format (0.0.4) parser must accept it too, for scrapers that
only speak that."""
import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families
from prometheus_client.parser import text_string_to_metric_families as classic

text = sys.stdin.read()
if not list(classic(text)):
    sys.exit("the classic text-format parser found no metric families")
for family in text_string_to_metric_families(text):
    for s in family.samples:
        print(json.dumps({"name": s.name, "labels": s.labels, "value": s.value, "type": family.type}))
