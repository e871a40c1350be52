#!/usr/bin/python3
# check_monitoring: the dashboard and alert rules in conf/monitoring/ against a relay's
# /metrics text, so that a renamed or misspelled metric fails a test instead of leaving a
# panel empty or an alert silent (issue 13).
#
#   check_monitoring.py METRICS_FILE DASHBOARD_JSON RULES_YAML
#
# Checks:
#  - the dashboard is Grafana 10 importable JSON: schemaVersion, __inputs DS_PROMETHEUS, a
#    datasource template variable, and every non-row panel has the ${DS_PROMETHEUS}
#    datasource and targets, each with a datasource, an expr and a refId;
#  - the rules file is Prometheus rule YAML: groups with a name and rules, each rule an
#    alert with expr, for, labels.severity (critical|warning|info), annotations summary and
#    description;
#  - every metric name in every expr is exposed by /metrics as a `# TYPE` family (a
#    _bucket/_sum/_count suffix may name a histogram or summary family; `up` is
#    Prometheus's own), every label a selector matches on exists on that family and every
#    `label="value"` matcher names a value some series has (label values are fixed at
#    start-up in sealrelay, so a scrape shows them all);
#  - every identifier left in an expr is a metric, a PromQL function, keyword or
#    aggregation: a misspelt name without the sealrelay_ prefix is not skipped.
# Prints one line per problem and exits 1 when there is any; 0 with a summary otherwise.
# Python 3.11 standard library plus python3-yaml.
import json
import re
import sys

import yaml

FUNCTIONS = {
    "abs", "absent", "absent_over_time", "avg_over_time", "ceil", "changes", "clamp", "clamp_max",
    "clamp_min", "count_over_time", "day_of_month", "day_of_week", "days_in_month", "delta", "deriv",
    "exp", "floor", "histogram_quantile", "holt_winters", "hour", "idelta", "increase", "irate",
    "label_join", "label_replace", "last_over_time", "ln", "log10", "log2", "max_over_time",
    "min_over_time", "minute", "month", "predict_linear", "present_over_time", "quantile_over_time",
    "rate", "resets", "round", "scalar", "sgn", "sort", "sort_desc", "sqrt", "stddev_over_time",
    "stdvar_over_time", "sum_over_time", "time", "timestamp", "vector", "year",
}
AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
                "bottomk", "topk", "quantile"}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
            "bool", "offset", "inf", "nan"}
BUILTIN_METRICS = {"up"}   # set by Prometheus for every target, not by the relay

IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
MATCHER = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*")\s*,?')


def parse_metrics(text):
    """Return ({family: type}, {series name: [label dicts]}) from exposition text."""
    families, series = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            parts = line.split()
            if len(parts) >= 4:
                families[parts[2]] = parts[3]
        elif line and not line.startswith("#"):
            m = re.match(r"([A-Za-z_:][A-Za-z0-9_:]*)(\{([^}]*)\})?\s", line)
            if not m:
                continue
            labels = dict(re.findall(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
            series.setdefault(m.group(1), []).append(labels)
    return families, series


def family_of(name, families):
    """The exposed family `name` belongs to, or None."""
    if name in families:
        return name
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and families.get(name[: -len(suffix)]) in ("histogram", "summary"):
            return name[: -len(suffix)]
    if name.endswith("_total") and families.get(name[: -len("_total")]) == "counter":
        return name[: -len("_total")]
    return None


def check_expr(where, expr, families, series, problems, used):
    # Grafana variables: $__rate_interval, $__range, $instance (inside strings or ranges).
    text = expr
    # Label matchers: check them, then drop the braces.
    selectors = []

    def braces(m):
        selectors.append((m.start(), m.group(1)))
        return " " * len(m.group(0))

    text = re.sub(r"\{([^{}]*)\}", braces, text)
    # Grouping clauses: by (a, b), without (...), on (...), ignoring (...), group_left (...).
    grouping = []

    def clause(m):
        grouping.extend(x.strip() for x in m.group(2).split(",") if x.strip())
        return m.group(1) + " " * (len(m.group(0)) - len(m.group(1)))

    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)", clause, text)
    text = re.sub(r"\[[^\]]*\]", lambda m: " " * len(m.group(0)), text)  # ranges, subqueries
    text = STRING.sub(lambda m: " " * len(m.group(0)), text)
    text = re.sub(r"\b\d+(ms|s|m|h|d|w|y)\b", " ", text)  # durations (offset 15m)
    text = re.sub(r"\b\d+(\.\d+)?([eE][+-]?\d+)?\b", " ", text)  # numbers (1e-9)
    names_here = []
    for m in IDENT.finditer(text):
        ident = m.group(0)
        after = text[m.end():].lstrip()
        if ident in KEYWORDS or ident.lower() in KEYWORDS:
            continue
        if after.startswith("(") and (ident in FUNCTIONS or ident in AGGREGATIONS):
            continue
        if ident in AGGREGATIONS and re.match(r"(by|without)\b", after):
            continue   # sum by (x) (...): the clause was blanked above
        if after.startswith("("):
            problems.append(f"{where}: unknown function {ident}()")
            continue
        names_here.append((m.start(), m.end(), ident))
        if ident in BUILTIN_METRICS:
            continue
        fam = family_of(ident, families)
        used.add(ident)
        if fam is None:
            problems.append(f"{where}: metric {ident} is not exposed by /metrics")
    # Each selector's matchers belong to the metric name just before its brace.
    for pos, body in selectors:
        owner = None
        for start, end, ident in names_here:
            if end <= pos and not text[end:pos].strip():
                owner = ident
        if owner is None:
            problems.append(f"{where}: a label selector without a metric name: {{{body}}}")
            continue
        if owner in BUILTIN_METRICS:
            continue
        have = series.get(owner, [])
        if not have:
            continue   # reported above if not exposed; a family without series: nothing to check
        rest = body
        while rest.strip():
            m = MATCHER.match(rest)
            if not m:
                problems.append(f"{where}: cannot parse matchers {{{body}}}")
                break
            rest = rest[m.end():]
            label, op, value = m.group(1), m.group(2), json.loads(m.group(3))
            if label == "instance" or label == "job":
                continue   # added by Prometheus at scrape time
            if not any(label in s for s in have):
                problems.append(f"{where}: {owner} has no label {label}")
            elif op == "=" and not any(s.get(label) == value for s in have):
                problems.append(f'{where}: no {owner} series has {label}="{value}"')
    for label in grouping:
        if label in ("instance", "job"):
            continue
        if not any(label in s for _, _, n in names_here for s in series.get(n, [])):
            problems.append(f"{where}: grouping label {label} is on none of its metrics")


def check_dashboard(path, families, series, problems, used):
    d = json.load(open(path))
    if not isinstance(d.get("schemaVersion"), int) or d["schemaVersion"] < 36:
        problems.append(f"{path}: schemaVersion missing or older than Grafana 9/10 (36+)")
    inputs = [i.get("name") for i in d.get("__inputs", [])]
    if "DS_PROMETHEUS" not in inputs:
        problems.append(f"{path}: __inputs has no DS_PROMETHEUS")
    variables = d.get("templating", {}).get("list", [])
    if not any(v.get("type") == "datasource" and v.get("name") == "DS_PROMETHEUS" for v in variables):
        problems.append(f"{path}: no datasource template variable DS_PROMETHEUS")
    ds_ok = lambda ds: isinstance(ds, dict) and ds.get("type") == "prometheus" and ds.get("uid") == "${DS_PROMETHEUS}"
    for v in variables:
        if v.get("type") == "query":
            if not ds_ok(v.get("datasource")):
                problems.append(f"{path}: variable {v.get('name')} does not use ${{DS_PROMETHEUS}}")
            q = v.get("query")
            q = q.get("query") if isinstance(q, dict) else q
            m = re.fullmatch(r"label_values\((\w+),\s*\w+\)", q or "")
            if not m:
                problems.append(f"{path}: variable {v.get('name')}: unexpected query {q!r}")
            else:
                check_expr(f"variable {v.get('name')}", m.group(1), families, series, problems, used)
    panels = []
    for p in d.get("panels", []):
        panels.append(p)
        panels.extend(p.get("panels", []))
    count = 0
    ids = set()
    for p in panels:
        title = p.get("title", "?")
        if p.get("id") in ids:
            problems.append(f"{path}: panel id {p.get('id')} used twice")
        ids.add(p.get("id"))
        if "gridPos" not in p:
            problems.append(f'{path}: panel "{title}" has no gridPos')
        if p.get("type") == "row":
            continue
        count += 1
        if not ds_ok(p.get("datasource")):
            problems.append(f'{path}: panel "{title}" has no ${{DS_PROMETHEUS}} datasource')
        targets = p.get("targets") or []
        if not targets:
            problems.append(f'{path}: panel "{title}" has no targets')
        for t in targets:
            if not t.get("expr") or not t.get("refId"):
                problems.append(f'{path}: panel "{title}": a target without expr or refId')
                continue
            if not ds_ok(t.get("datasource")):
                problems.append(f'{path}: panel "{title}" target {t["refId"]} has no ${{DS_PROMETHEUS}} datasource')
            check_expr(f'panel "{title}" {t["refId"]}', t["expr"], families, series, problems, used)
    return count


def check_rules(path, families, series, problems, used):
    doc = yaml.safe_load(open(path))
    groups = doc.get("groups") if isinstance(doc, dict) else None
    if not groups:
        problems.append(f"{path}: no groups")
        return 0
    count = 0
    names = set()
    for g in groups:
        if not g.get("name") or not g.get("rules"):
            problems.append(f"{path}: a group without name or rules")
            continue
        if g["name"] in names:
            problems.append(f"{path}: group {g['name']} twice")
        names.add(g["name"])
        for r in g["rules"]:
            alert = r.get("alert")
            count += 1
            where = f"alert {alert}"
            if not alert or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", alert):
                problems.append(f"{path}: a rule without a valid alert name: {r}")
            if not isinstance(r.get("expr"), str) or not r["expr"].strip():
                problems.append(f"{where}: no expr")
                continue
            if not re.fullmatch(r"\d+[smhdwy]", str(r.get("for", ""))):
                problems.append(f"{where}: for missing or not a duration")
            if (r.get("labels") or {}).get("severity") not in ("critical", "warning", "info"):
                problems.append(f"{where}: labels.severity must be critical, warning or info")
            ann = r.get("annotations") or {}
            for k in ("summary", "description"):
                if not ann.get(k):
                    problems.append(f"{where}: annotations.{k} missing")
            if r["expr"].count("(") != r["expr"].count(")"):
                problems.append(f"{where}: unbalanced parentheses")
            check_expr(where, r["expr"], families, series, problems, used)
    return count


def main():
    if len(sys.argv) != 4:
        print("usage: check_monitoring.py METRICS_FILE DASHBOARD_JSON RULES_YAML", file=sys.stderr)
        return 2
    families, series = parse_metrics(open(sys.argv[1]).read())
    if not families:
        print(f"{sys.argv[1]}: no # TYPE line: not a /metrics scrape")
        return 1
    problems, used = [], set()
    panels = check_dashboard(sys.argv[2], families, series, problems, used)
    rules = check_rules(sys.argv[3], families, series, problems, used)
    for p in problems:
        print(p)
    if problems:
        return 1
    print(f"ok: {panels} panels, {rules} alert rules, {len(used)} metric names, all exposed by /metrics")
    return 0


if __name__ == "__main__":
    sys.exit(main())
