#!/usr/bin/env python3
"""Measurements bench/run.sh needs that hyperfine cannot make, and the results report.

    measure.py rss      --runs N --out FILE --name NAME -- CMD...
        peak RSS of CMD (`/usr/bin/time -f %M`, i.e. the child's ru_maxrss), N runs
    measure.py refresh  --runs N --out FILE --proxy-log LOG --gap S --cmd NAME JSON_COMMAND...
        the refresh path: each CMD must find an ID token inside koidc's expiry margin and a valid
        refresh token; runs are spaced S seconds per command so that the token Dex just issued
        (95 s lifetime, 90 s margin) is due again. Wall time of the process, time it waited for
        Dex (from the proxy's log), and the difference: koidc's own time. JSON_COMMAND: an argv
        array, or {"env": {...}, "argv": [...]} to set environment variables.
    measure.py login    --runs N --out FILE --proxy-log LOG --cmd NAME JSON_ARGV...
        the browser login: CMD runs with --no-browser and `{cache_dir}` in its arguments replaced
        by a new empty directory (or `{kept_cache_dir}` by one whose tokens are deleted before
        each run); this script is the browser (Dex's mock connector). Wall time,
        browser time (URL printed -> callback request sent), Dex time of the plugin's own
        requests, and koidc's own time (the rest).
    measure.py parallel --rounds R --procs P --out FILE --proxy-log LOG --gap S -- CMD...
        P copies of CMD started at once on an expired token; refresh grants Dex saw (must be 1),
        wall time from the first start to the last exit, and that all P printed the same token.
        --compare NAME JSON_ARGV: P copies of another command the same way, for comparison
    measure.py floor    --runs N --out FILE
        /bin/true through the same process spawning as `refresh` and `login` (their floor).
    measure.py browser  URL
        a --browser-command for kubelogin (whose URL is its own loopback page that redirects to
        the IdP) and koidc alike: completes a Dex mock-connector login.
    measure.py kubeconfig --server URL --ca FILE --out FILE (--token-from-stdin | --exec JSON_ARGV)
        a kubeconfig (mode 0600) whose user has the ExecCredential token read on stdin as a
        static token, or runs the exec plugin JSON_ARGV (apiVersion v1, IfAvailable)
    measure.py evict    FILE...
        drops the files' clean pages from the page cache (after `sync`), so that the next run of a
        binary reads it back through its page faults, as after the kernel reclaimed it
    measure.py report   --results DIR --out FILE
        the markdown report from hyperfine's JSON and the JSON lines written above.

Times are CLOCK_MONOTONIC (`time.monotonic()`), the clock bench/idp-proxy.py stamps its log
with. Secrets: tokens are compared by SHA-256 in memory and never written; only URL paths are
printed. Python 3 standard library only.
"""

import argparse
import glob
import hashlib
import http.cookiejar
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request


def fail(message):
    print(f"measure: {message}", file=sys.stderr)
    sys.exit(1)


def append(out, record):
    with open(out, "a") as f:
        f.write(json.dumps(record) + "\n")


# ---------------------------------------------------------------------------------------------
# Dex login as a browser would do it (the mock connector logs in without a form).

class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def _where(url):
    p = urllib.parse.urlsplit(url)
    return f"{p.scheme}://{p.netloc}{p.path}"


def _with_mock_connector(url):
    p = urllib.parse.urlsplit(url)
    query = [(k, v) for k, v in urllib.parse.parse_qsl(p.query, keep_blank_values=True)
             if k != "connector_id"] + [("connector_id", "mock")]
    return urllib.parse.urlunsplit(p._replace(query=urllib.parse.urlencode(query)))


def browse(url):
    """Follows `url` to the plugin's loopback redirect URI; returns the monotonic time at which
    the callback request was sent (everything after it is the plugin's work)."""
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), _NoRedirect())

    def get(u):
        try:
            r = opener.open(u, timeout=30)
            return r.status, r.headers, r.read()
        except urllib.error.HTTPError as err:
            return err.code, err.headers, err.read()

    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    if "redirect_uri" not in query:
        # kubelogin opens its own loopback page, which redirects to the authorization URL.
        status, headers, _ = get(url)
        if status not in (301, 302, 303, 307, 308) or not headers.get("Location"):
            fail(f"{_where(url)} answered {status}, not a redirect to the IdP")
        url = urllib.parse.urljoin(url, headers["Location"])
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    redirect = urllib.parse.urlsplit(query.get("redirect_uri", ""))
    if not redirect.netloc:
        fail(f"no redirect_uri in {_where(url)}")
    url = _with_mock_connector(url)
    for _ in range(20):
        p = urllib.parse.urlsplit(url)
        if (p.scheme, p.netloc, p.path or "/") == (redirect.scheme, redirect.netloc,
                                                   redirect.path or "/"):
            sent = time.monotonic()
            status, _, _ = get(url)
            if not 200 <= status < 400:
                fail(f"the loopback callback {_where(url)} answered {status}")
            return sent
        status, headers, _ = get(url)
        if status in (301, 302, 303, 307, 308) and headers.get("Location"):
            url = urllib.parse.urljoin(url, headers["Location"])
            continue
        fail(f"{_where(url)} answered {status}")
    fail("no loopback callback after 20 requests")


# ---------------------------------------------------------------------------------------------
# The proxy's log.

def proxy_records(log, start, end):
    """Records of requests that began and ended inside [start, end]."""
    out = []
    with open(log) as f:
        for line in f:
            r = json.loads(line)
            if r["start"] >= start and r["end"] <= end:
                out.append(r)
    return out


def union_length(intervals):
    total, cur_s, cur_e = 0.0, None, None
    for s, e in sorted(intervals):
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                total += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None:
        total += cur_e - cur_s
    return total


def ms(seconds):
    return round(seconds * 1000, 3)


# ---------------------------------------------------------------------------------------------
# Subcommands.

def cmd_rss(args):
    values = []
    with tempfile.NamedTemporaryFile("r") as tmp:
        for _ in range(args.runs):
            run = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", tmp.name, *args.argv],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            if run.returncode != 0:
                fail(f"{args.name}: exit {run.returncode}: {run.stderr.decode()[-300:]}")
            tmp.seek(0)
            values.append(int(tmp.read().split()[-1]))
    append(args.out, {"kind": "rss", "name": args.name, "kib": values})
    print(f"  {args.name}: peak RSS median {statistics.median(values)} KiB "
          f"(min {min(values)}, max {max(values)}, {len(values)} runs)")


def _command(spec):
    """A JSON argv, or {"env": {NAME: VALUE}, "argv": [...]} to set (VALUE null: remove) variables
    of the environment (without an `env` process in between, whose start-up would be timed)."""
    spec = json.loads(spec)
    if isinstance(spec, dict):
        env = {**os.environ, **spec.get("env", {})}
        return spec["argv"], {k: v for k, v in env.items() if v is not None}
    return spec, None


def _spin(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def _timed_run(argv, env=None):
    t0 = time.monotonic()
    run = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env)
    t1 = time.monotonic()
    return t0, t1, run


def cmd_floor(args):
    walls = []
    for _ in range(args.runs):
        t0, t1, _ = _timed_run(["/bin/true"])
        walls.append(ms(t1 - t0))
    append(args.out, {"kind": "floor", "name": "/bin/true", "wall_ms": walls})


def cmd_refresh(args):
    cmds = [(name, _command(spec)) for name, spec in args.cmd]
    # The tokens were issued just before this script started: wait a gap first.
    last_end = {name: time.monotonic() for name, _ in cmds}
    runs = {name: [] for name, _ in cmds}
    for i in range(args.runs):
        # Rotate which command comes first after the wait, and wake the CPU up before each run
        # (a vCPU idle for seconds starts slowly; under kubectl, which has just run for tens of
        # milliseconds, the plugin never starts on an idle CPU).
        for name, (argv, env) in cmds[i % len(cmds):] + cmds[:i % len(cmds)]:
            due = last_end[name] + args.gap
            if time.monotonic() < due:
                time.sleep(due - time.monotonic())
            _spin(0.005)
            t0, t1, run = _timed_run(argv, env)
            last_end[name] = t1
            if run.returncode != 0:
                fail(f"{name}: exit {run.returncode}: {run.stderr.decode()[-300:]}")
            recs = proxy_records(args.proxy_log, t0, t1)
            grants = [r.get("grant") for r in recs if r.get("grant")]
            if grants != ["refresh_token"]:
                fail(f"{name}, run {i + 1}: expected one refresh grant at Dex, saw {grants} "
                     "(was the token still valid? raise --gap)")
            dex = union_length([(r["start"], r["end"]) for r in recs])
            runs[name].append({"wall_ms": ms(t1 - t0), "idp_ms": ms(dex),
                               "own_ms": ms(t1 - t0 - dex),
                               "requests": [f'{r["method"]} {r["path"]}' for r in recs]})
    for name, _ in cmds:
        append(args.out, {"kind": "refresh", "name": name, "runs": runs[name]})
        own = statistics.median(r["own_ms"] for r in runs[name])
        print(f"  {name}: koidc's own time median {own:.1f} ms ({len(runs[name])} runs)")


def _login_once(name, argv, proxy_log, cache_root):
    # {cache_dir}: a new directory per run (for the keyring cache, a new master key is created
    # in the Secret Service: a first login). {kept_cache_dir}: one directory per command whose
    # cached tokens are deleted before each run, its master key kept (a later login).
    fresh = tempfile.mkdtemp(dir=cache_root)
    kept = os.path.join(cache_root, hashlib.sha256(name.encode()).hexdigest()[:16])
    if os.path.isdir(kept):
        for entry in os.listdir(kept):
            if entry.endswith((".enc", ".json")):
                os.unlink(os.path.join(kept, entry))
    argv = [a.replace("{cache_dir}", fresh).replace("{kept_cache_dir}", kept) for a in argv]
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    shown = sent = None
    err_lines = []
    for line in proc.stderr:
        err_lines.append(line)
        if shown is None and "http" in line and "open" in line:
            shown = time.monotonic()
            url = next(w for w in reversed(line.split()) if w.startswith("http"))
            sent = browse(url)
    out = proc.stdout.read()
    proc.wait()
    t1 = time.monotonic()
    if proc.returncode != 0 or shown is None:
        fail(f"{name}: exit {proc.returncode}, login URL seen: {shown is not None}: "
             f"{''.join(err_lines)[-300:]}")
    if not json.loads(out).get("status", {}).get("token"):
        fail(f"{name}: no token in the ExecCredential")
    # The plugin's own requests to Dex: not the browser's (inside [shown, sent]).
    # (By start: the proxy stamps a request's end after its last write, which can be a moment
    # after the browser, already holding the answer, sent the callback.)
    recs = [r for r in proxy_records(proxy_log, t0, t1) if not shown <= r["start"] <= sent]
    grants = [r.get("grant") for r in recs if r.get("grant")]
    if grants != ["authorization_code"]:
        fail(f"{name}: expected one authorization_code grant, saw {grants}")
    dex = union_length([(r["start"], r["end"]) for r in recs])
    browser = sent - shown
    return {"wall_ms": ms(t1 - t0), "browser_ms": ms(browser), "idp_ms": ms(dex),
            "own_ms": ms(t1 - t0 - browser - dex),
            "requests": [f'{r["method"]} {r["path"]}' for r in recs]}


def cmd_login(args):
    cmds = [(name, json.loads(argv)) for name, argv in args.cmd]
    runs = {name: [] for name, _ in cmds}
    for name, argv in cmds:
        if any("{kept_cache_dir}" in a for a in argv):
            _login_once(name, argv, args.proxy_log, args.cache_root)  # creates the master key
    for _ in range(args.runs):
        for name, argv in cmds:
            runs[name].append(_login_once(name, argv, args.proxy_log, args.cache_root))
    for name, _ in cmds:
        append(args.out, {"kind": "login", "name": name, "runs": runs[name]})
        own = statistics.median(r["own_ms"] for r in runs[name])
        print(f"  {name}: koidc's own time median {own:.1f} ms ({len(runs[name])} runs)")


def cmd_parallel(args):
    rounds = []
    last_end = time.monotonic()  # the token was issued just before: wait a gap first
    for i in range(args.rounds):
        due = last_end + args.gap
        if time.monotonic() < due:
            time.sleep(due - time.monotonic())
        _spin(0.005)  # see cmd_refresh
        t0 = time.monotonic()
        procs = [subprocess.Popen(args.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE) for _ in range(args.procs)]
        outs = [p.communicate() for p in procs]
        t1 = time.monotonic()
        last_end = t1
        failed = [p.returncode for p in procs if p.returncode != 0]
        if failed:
            fail(f"round {i + 1}: {len(failed)} of {args.procs} failed: "
                 f"{outs[procs.index(next(p for p in procs if p.returncode))][1].decode()[-300:]}")
        tokens = {hashlib.sha256(json.loads(o)["status"]["token"].encode()).hexdigest()
                  for o, _ in outs}
        recs = proxy_records(args.proxy_log, t0, t1)
        grants = [r["grant"] for r in recs if r.get("grant")]
        rounds.append({"wall_ms": ms(t1 - t0), "refresh_grants": grants.count("refresh_token"),
                       "token_requests": len(grants), "requests": len(recs),
                       "distinct_tokens": len(tokens)})
        for name, argv in args.compare or []:
            argv = json.loads(argv)
            c0 = time.monotonic()
            procs = [subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL) for _ in range(args.procs)]
            codes = [p.wait() for p in procs]
            if any(codes):
                fail(f"{name}: {sum(1 for c in codes if c)} of {args.procs} failed")
            rounds[-1].setdefault("compare_ms", {})[name] = ms(time.monotonic() - c0)
        print(f"  round {i + 1}: {args.procs} processes, {grants.count('refresh_token')} refresh "
              f"grant(s) at Dex, {len(tokens)} distinct token(s), {ms(t1 - t0):.0f} ms; "
              + ", ".join(f"{n}: {v:.0f} ms" for n, v in rounds[-1].get("compare_ms", {}).items()))
    append(args.out, {"kind": "parallel", "name": args.name, "procs": args.procs,
                      "rounds": rounds})


def cmd_kubeconfig(args):
    if args.exec_argv:
        argv = json.loads(args.exec_argv)
        user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": argv[0],
                         "args": argv[1:], "interactiveMode": "IfAvailable"}}
    else:
        user = {"token": json.load(sys.stdin)["status"]["token"]}
    config = {"apiVersion": "v1", "kind": "Config", "current-context": "bench",
              "clusters": [{"name": "bench", "cluster": {"server": args.server,
                                                         "certificate-authority": args.ca}}],
              "users": [{"name": "bench", "user": user}],
              "contexts": [{"name": "bench", "context": {"cluster": "bench", "user": "bench"}}]}
    fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(config, f)


def cmd_browser(args):
    browse(args.url)


def cmd_evict(args):
    os.sync()
    for path in args.files:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


# ---------------------------------------------------------------------------------------------
# Report.

def _fmt(v):
    return f"{v:.1f}" if v < 100 else f"{v:.0f}"


def _bootstrap_median_diff(a, b, rounds=2000):
    """95% percentile-bootstrap interval of median(a) - median(b)."""
    import random
    rng = random.Random(1)
    diffs = sorted(statistics.median(rng.choices(a, k=len(a))) -
                   statistics.median(rng.choices(b, k=len(b))) for _ in range(rounds))
    return diffs[int(0.025 * rounds)], diffs[int(0.975 * rounds) - 1]


def cmd_report(args):
    d = args.results
    lines = []
    meta = json.load(open(os.path.join(d, "meta.json")))
    lines += ["# koidc benchmark results", "",
              f"Generated by `bench/run.sh` on {meta['date']}. Machine: {meta['cpus']} CPUs "
              f"({meta['cpu']}), Linux {platform.release()}, {meta['os']}. koidc "
              f"{meta['koidc_version']}, kubelogin {meta['kubelogin_version']}, Dex "
              f"{meta['dex_version']}, kubectl {meta['kubectl_version']}, hyperfine "
              f"{meta['hyperfine_version']}.", "",
              "Load average (1 min) before each section: " +
              ", ".join(f"{k} {v}" for k, v in meta.get("load", {}).items()) + ".", ""]

    def hyperfine_table(file, title, passes=None):
        """One table from hyperfine's JSON; `passes`: a glob of several runs of the same
        commands (in any order) whose times are pooled, in the first pass's order."""
        if passes:
            files = sorted(glob.glob(os.path.join(d, passes)))
            if not files:
                return None
            pooled = {}
            for f in files:
                for r in json.load(open(f))["results"]:
                    pooled.setdefault(r["command"], []).extend(r["times"])
            res = []
            for name, times in pooled.items():
                mean = statistics.mean(times)
                res.append({"command": name, "times": times, "median": statistics.median(times),
                            "min": min(times), "mean": mean, "stddev": statistics.stdev(times)})
            title += f" ({len(files)} passes in rotated order, pooled)"
        else:
            path = os.path.join(d, file)
            if not os.path.exists(path):
                return None
            res = json.load(open(path))["results"]
        base = res[0]["median"]
        lines.extend([f"## {title}", "",
                      "| command | median [ms] | min [ms] | mean ± σ [ms] | runs | median ÷ first row |",
                      "| --- | ---: | ---: | ---: | ---: | ---: |"])
        for r in res:
            lines.append(f"| {r['command']} | {r['median'] * 1000:.2f} | {r['min'] * 1000:.2f} "
                         f"| {r['mean'] * 1000:.2f} ± {r['stddev'] * 1000:.2f} "
                         f"| {len(r['times'])} | {r['median'] / base:.2f} |")
        lines.append("")
        return {r["command"]: r for r in res}

    def goals(table):
        floor = table.get("/bin/true")
        ko = [n for n in table if n.startswith("koidc") and "--version" not in n]
        kl = [n for n in table if n.startswith("kubelogin") and "--version" not in n]
        if floor:
            lines.extend(["koidc ÷ `/bin/true` (goal: at most 1.5): " + "; ".join(
                f"{n}: {table[n]['median'] / floor['median']:.2f}× "
                f"({(table[n]['median'] - floor['median']) * 1000:+.2f} ms)" for n in ko) + ".", ""])
        if kl and ko:
            lines.extend(["kubelogin ÷ koidc (goal: at least 5): " + "; ".join(
                f"{a} ÷ {b}: {table[a]['median'] / table[b]['median']:.1f}×"
                for a in kl for b in ko[:2]) + ".", ""])

    warm = hyperfine_table("warm.json", "Warm `get-token` (valid token cached)")
    if warm:
        goals(warm)
    reread = hyperfine_table("warm-reread.json", "Warm `get-token`, each binary's page cache dropped "
                             "and read back by its own page faults")
    if reread:
        goals(reread)
    hyperfine_table("cold-keyring.json", "Keyring cache with a cold kernel keyring "
                    "(key from the Secret Service over D-Bus)")
    kube = hyperfine_table(None, "`kubectl get --raw /version`", passes="kubectl-*.json")
    if kube:
        names = list(kube)
        static = kube[names[0]]
        parts = []
        for n in names[1:]:
            lo, hi = _bootstrap_median_diff(kube[n]["times"], static["times"])
            parts.append(f"{n}: {(kube[n]['median'] - static['median']) * 1000:+.1f} ms "
                         f"(95% bootstrap interval {lo * 1000:+.1f} … {hi * 1000:+.1f} ms)")
        lines += ["Added time, median of the plugin row − median of the static-token row: " +
                  "; ".join(parts) + ".", ""]

    records = []
    path = os.path.join(d, "measure.jsonl")
    if os.path.exists(path):
        records = [json.loads(line) for line in open(path)]
    rss = [r for r in records if r["kind"] == "rss"]
    if rss:
        lines += ["## Peak RSS (`/usr/bin/time -f %M`)", "",
                  "| command | median [KiB] | min | max | runs |", "| --- | ---: | ---: | ---: | ---: |"]
        for r in rss:
            v = r["kib"]
            lines.append(f"| {r['name']} | {statistics.median(v):.0f} | {min(v)} | {max(v)} | {len(v)} |")
        lines.append("")
    sizes = os.path.join(d, "sizes.tsv")
    if os.path.exists(sizes):
        lines += ["## Binary size", "", "| binary | bytes | MiB | how it was built |",
                  "| --- | ---: | ---: | --- |"]
        for row in open(sizes):
            name, size, how = row.rstrip("\n").split("\t")
            lines.append(f"| {name} | {int(size)} | {int(size) / 1048576:.1f} | {how} |")
        lines.append("")
    floor = [r for r in records if r["kind"] == "floor"]
    floor_ms = statistics.median(floor[-1]["wall_ms"]) if floor else None
    for kind, title in (("refresh", "Refresh path (ID token inside the 90 s margin, valid refresh "
                                    "token)"),
                        ("login", "Browser login path (empty cache, `--no-browser`, this script "
                                  "as the browser)")):
        recs = [r for r in records if r["kind"] == kind]
        if not recs:
            continue
        cols = ["wall", "browser", "Dex", "koidc's own"] if kind == "login" else \
            ["wall", "Dex", "koidc's own"]
        keys = ["wall_ms", "browser_ms", "idp_ms", "own_ms"] if kind == "login" else \
            ["wall_ms", "idp_ms", "own_ms"]
        lines += [f"## {title}", "", "Medians (min) in ms over the runs; " +
                  (f"process spawn floor (`/bin/true` the same way): {floor_ms:.2f} ms." if floor_ms
                   else ""), "",
                  "| command | " + " | ".join(cols) + " | runs | Dex requests of one run |",
                  "| --- | " + " | ".join("---:" for _ in cols) + " | ---: | --- |"]
        for r in recs:
            cells = []
            for k in keys:
                v = [x[k] for x in r["runs"]]
                cells.append(f"{_fmt(statistics.median(v))} ({_fmt(min(v))})")
            lines.append(f"| {r['name']} | " + " | ".join(cells) +
                         f" | {len(r['runs'])} | {', '.join(r['runs'][0]['requests'])} |")
        lines.append("")
    for r in (r for r in records if r["kind"] == "parallel"):
        walls = [x["wall_ms"] for x in r["rounds"]]
        compare = list(r["rounds"][0].get("compare_ms", {}))
        lines += [f"## {r['procs']} parallel `get-token` on an expired token: {r['name']}", "",
                  "| round | refresh grants at Dex | token requests | distinct tokens printed "
                  "| wall [ms] |" + "".join(f" {c}: wall [ms] |" for c in compare),
                  "| ---: | ---: | ---: | ---: | ---: |" + " ---: |" * len(compare)]
        for i, x in enumerate(r["rounds"], 1):
            lines.append(f"| {i} | {x['refresh_grants']} | {x['token_requests']} "
                         f"| {x['distinct_tokens']} | {x['wall_ms']:.0f} |" +
                         "".join(f" {x['compare_ms'][c]:.0f} |" for c in compare))
        lines += ["", f"Wall time median {statistics.median(walls):.0f} ms, min {min(walls):.0f} ms" +
                  "".join(f"; {c}: median "
                          f"{statistics.median(x['compare_ms'][c] for x in r['rounds']):.0f} ms"
                          for c in compare) + ".", ""]
    with open(args.out, "w") as f:
        f.write("\n".join(lines))
    print(f"wrote {args.out}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="sub", required=True)
    s = sub.add_parser("rss")
    s.add_argument("--runs", type=int, required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--name", required=True)
    s.add_argument("argv", nargs="+")
    s = sub.add_parser("floor")
    s.add_argument("--runs", type=int, required=True)
    s.add_argument("--out", required=True)
    for name in ("refresh", "login"):
        s = sub.add_parser(name)
        s.add_argument("--runs", type=int, required=True)
        s.add_argument("--out", required=True)
        s.add_argument("--proxy-log", required=True)
        s.add_argument("--cmd", nargs=2, action="append", required=True,
                       metavar=("NAME", "JSON_ARGV"))
        if name == "refresh":
            s.add_argument("--gap", type=float, required=True)
        else:
            s.add_argument("--cache-root", required=True)
    s = sub.add_parser("parallel")
    s.add_argument("--rounds", type=int, required=True)
    s.add_argument("--procs", type=int, required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--name", required=True)
    s.add_argument("--proxy-log", required=True)
    s.add_argument("--gap", type=float, required=True)
    s.add_argument("--compare", nargs=2, action="append", metavar=("NAME", "JSON_ARGV"),
                   help="also start P copies of this command at once in each round (wall only)")
    s.add_argument("argv", nargs="+")
    s = sub.add_parser("browser")
    s.add_argument("url")
    s = sub.add_parser("kubeconfig")
    s.add_argument("--server", required=True)
    s.add_argument("--ca", required=True)
    s.add_argument("--out", required=True)
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--token-from-stdin", action="store_true")
    g.add_argument("--exec", dest="exec_argv", metavar="JSON_ARGV")
    s = sub.add_parser("evict")
    s.add_argument("files", nargs="+")
    s = sub.add_parser("report")
    s.add_argument("--results", required=True)
    s.add_argument("--out", required=True)
    args = p.parse_args()
    {"rss": cmd_rss, "floor": cmd_floor, "refresh": cmd_refresh, "login": cmd_login,
     "parallel": cmd_parallel, "browser": cmd_browser, "kubeconfig": cmd_kubeconfig, "evict": cmd_evict, "report": cmd_report}[args.sub](args)


if __name__ == "__main__":
    main()
