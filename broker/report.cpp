#include "broker/report.hpp"

#include "common/names.hpp"

#include <cctype>
#include <cstdio>
#include <filesystem>
#include <spdlog/spdlog.h>
#include <sqlite3.h>
#include <stdexcept>

namespace trawl::broker {

using nlohmann::json;

std::string dump_json(const json& j, int indent) {
  return j.dump(indent, ' ', false, json::error_handler_t::replace);
}

json live_to_json(const LiveFigures& f) {
  return json{{"unix_ms", f.unix_ms},       {"total", f.total},
              {"done", f.done},             {"failed", f.failed},
              {"skipped", f.skipped},       {"bytes", f.bytes},
              {"files_per_s", f.files_per_s}, {"bytes_per_s", f.bytes_per_s},
              {"eta_s", f.eta_s},           {"elapsed_s", f.elapsed_s},
              {"active", f.active},         {"nodes", f.nodes},
              {"complete", f.complete}};
}

std::optional<LiveFigures> live_from_json(const json& j) {
  if (!j.is_object()) return std::nullopt;
  LiveFigures f;
  auto get_u = [&j](const char* k, std::uint64_t& out) {
    auto it = j.find(k);
    if (it == j.end() || !it->is_number_unsigned()) return false;
    out = it->get<std::uint64_t>();
    return true;
  };
  auto get_i = [&j](const char* k, std::int64_t& out) {
    auto it = j.find(k);
    if (it == j.end() || !it->is_number_integer()) return false;
    out = it->get<std::int64_t>();
    return true;
  };
  auto get_d = [&j](const char* k, double& out) {
    auto it = j.find(k);
    if (it == j.end() || !it->is_number()) return false;
    out = it->get<double>();
    return true;
  };
  auto c = j.find("complete");
  if (!get_i("unix_ms", f.unix_ms) || !get_i("total", f.total) || !get_u("done", f.done) ||
      !get_u("failed", f.failed) || !get_u("skipped", f.skipped) || !get_u("bytes", f.bytes) ||
      !get_d("files_per_s", f.files_per_s) || !get_d("bytes_per_s", f.bytes_per_s) ||
      !get_d("eta_s", f.eta_s) || !get_d("elapsed_s", f.elapsed_s) || !get_u("active", f.active) ||
      !get_u("nodes", f.nodes) || c == j.end() || !c->is_boolean())
    return std::nullopt;
  f.complete = c->get<bool>();
  return f;
}

json report_json(const JobStats& s, const ReportContext& ctx) {
  const double wall = s.wall_seconds();
  const double per_s = wall > 0 ? 1.0 / wall : 0;
  json r;
  r["schema"] = kReportSchema;
  r["tool"] = "trawl sink";
  r["complete"] = ctx.complete;
  r["exit_status"] = ctx.exit_status;
  r["started_unix_ms"] = s.started_unix_ms();
  r["last_result_unix_ms"] = s.last_result_unix_ms();
  r["finished_unix_ms"] = ctx.finished_unix_ms;
  r["wall_s"] = wall;
  r["links"] = {{"total", s.total()},
                {"done", s.done()},
                {"failed", s.failed()},
                {"skipped", s.skipped()},
                {"received_done", s.received_done()},
                {"received_failed", s.received_failed()},
                {"duplicates", s.duplicates()},
                {"requeued", s.requeued()}};
  r["bytes"] = s.bytes();
  r["throughput"] = {{"files_per_s", static_cast<double>(s.finished()) * per_s},
                     {"bytes_per_s", static_cast<double>(s.bytes()) * per_s}};
  const auto& lat = s.latency();
  r["latency_ms"] = {{"count", lat.count()}, {"mean", lat.mean()},          {"min", lat.min()},
                     {"p50", lat.percentile(50)}, {"p90", lat.percentile(90)}, {"p99", lat.percentile(99)},
                     {"max", lat.max()}};
  const auto& tt = s.ttfb();
  r["ttfb_ms"] = {{"p50", tt.percentile(50)}, {"p90", tt.percentile(90)}, {"p99", tt.percentile(99)},
                  {"max", tt.max()}};
  json hist = json::array();
  for (const auto& b : lat.buckets()) hist.push_back({{"lower", b.lower}, {"upper", b.upper}, {"count", b.count}});
  r["latency_histogram_ms"] = std::move(hist);
  json failures = json::array();
  for (const auto& [reason, g] : s.failures())
    failures.push_back({{"reason", std::string(proto::reason_name(reason))},
                        {"reason_code", static_cast<int>(reason)},
                        {"count", g.count},
                        {"example_url", g.example_url},
                        {"example_error", g.example_detail}});
  r["failures"] = std::move(failures);
  json nodes = json::array();
  for (const auto& [name, n] : s.nodes())
    nodes.push_back({{"node", name},
                     {"done", n.done},
                     {"failed", n.failed},
                     {"bytes", n.bytes},
                     {"files_per_s", n.files_per_s()},
                     {"requeued", n.requeued}});
  r["nodes"] = std::move(nodes);
  json done = json::array(), failed = json::array(), bytes = json::array();
  for (const auto& slot : s.timeline().slots()) {
    done.push_back(slot.done);
    failed.push_back(slot.failed);
    bytes.push_back(slot.bytes);
  }
  r["timeline"] = {{"origin_unix_ms", s.origin_unix_ms()},
                   {"slot_s", static_cast<double>(s.timeline().slot_ms()) / 1000.0},
                   {"done", std::move(done)},
                   {"failed", std::move(failed)},
                   {"bytes", std::move(bytes)}};
  json files = json::object();
  files["manifest"] = ctx.manifest_path.empty()
                          ? json(nullptr)
                          : json{{"path", ctx.manifest_path},
                                 {"rows", ctx.manifest_rows},
                                 {"ledger_rows", ctx.manifest_ledger_rows}};
  files["failed"] = ctx.failed_path.empty() ? json(nullptr)
                                            : json{{"path", ctx.failed_path}, {"rows", ctx.failed_rows}};
  r["files"] = std::move(files);
  return r;
}

namespace {

constexpr const char* kHtmlHead = R"html(<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'">
<title>trawl report</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; max-width: 900px; }
h1 { font-size: 20px; } h2 { font-size: 16px; margin-top: 28px; }
table { border-collapse: collapse; } td, th { padding: 2px 10px; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
svg { background: #fafafa; border: 1px solid #ddd; }
svg text { font: 11px sans-serif; fill: #333; }
.files { fill: none; stroke: #1f77b4; stroke-width: 2; }
.bytes { fill: none; stroke: #ff7f0e; stroke-width: 1.5; stroke-dasharray: 4 2; }
.bar { fill: #1f77b4; } .fail { fill: #d62728; } .axis { stroke: #888; }
.empty { fill: #888; }
</style>
</head>
<body>
<h1>trawl report</h1>
<table id="summary"></table>
<h2>Throughput over time</h2>
<svg id="throughput" width="860" height="260" viewBox="0 0 860 260"></svg>
<h2>Latency histogram</h2>
<svg id="latency" width="860" height="260" viewBox="0 0 860 260"></svg>
<h2>Nodes</h2>
<svg id="nodes" width="860" height="80"></svg>
<h2>Failures by reason</h2>
<svg id="failures" width="860" height="80"></svg>
<script type="application/json" id="trawl-data">)html";

constexpr const char* kHtmlTail = R"html(</script>
<script>
(function () {
  'use strict';
  const NS = 'http://www.w3.org/2000/svg';
  const data = JSON.parse(document.getElementById('trawl-data').textContent);
  function el(parent, name, attrs, text) {
    const e = document.createElementNS(NS, name);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    parent.appendChild(e);
    return e;
  }
  function bytes(b) {
    const u = ['B', 'KB', 'MB', 'GB', 'TB'];
    let i = 0;
    while (b >= 1000 && i < u.length - 1) { b /= 1000; i++; }
    return (i ? b.toFixed(1) : b.toFixed(0)) + ' ' + u[i];
  }
  function num(x, d) { return Number(x).toLocaleString('en-US', { maximumFractionDigits: d || 0 }); }

  // Summary table.
  const L = data.links, T = data.throughput, lat = data.latency_ms, tt = data.ttfb_ms;
  const rows = [
    ['links', (L.total >= 0 ? num(L.total) : '?') + ' total: ' + num(L.done) + ' done (' + num(L.skipped) +
      ' skipped), ' + num(L.failed) + ' failed'],
    ['bytes', bytes(data.bytes)],
    ['wall time', num(data.wall_s, 2) + ' s'],
    ['throughput', num(T.files_per_s, 1) + ' files/s, ' + bytes(T.bytes_per_s) + '/s'],
    ['latency', 'p50 ' + lat.p50 + ' ms, p90 ' + lat.p90 + ' ms, p99 ' + lat.p99 + ' ms, max ' + lat.max + ' ms'],
    ['first byte', 'p50 ' + tt.p50 + ' ms, p99 ' + tt.p99 + ' ms'],
    ['complete', data.complete ? 'yes' : 'no (interrupted)']];
  const table = document.getElementById('summary');
  for (const [k, v] of rows) {
    const tr = table.insertRow();
    tr.insertCell().textContent = k;
    tr.insertCell().textContent = v;
  }

  // Throughput: files/s (left axis) and MB/s (right axis) per time slot.
  (function () {
    const svg = document.getElementById('throughput');
    const W = 860, H = 260, m = { l: 60, r: 70, t: 14, b: 34 };
    const tl = data.timeline, slot = tl.slot_s || 1;
    // The sink starts before the job: begin the curve at the job's first link.
    const skip = Math.max(0, Math.min(tl.done.length - 1,
                                      Math.floor((data.started_unix_ms - tl.origin_unix_ms) / 1000 / slot)));
    const done = tl.done.slice(skip), failed = tl.failed.slice(skip), bytesv = tl.bytes.slice(skip);
    const n = done.length;
    el(svg, 'line', { class: 'axis', x1: m.l, y1: H - m.b, x2: W - m.r, y2: H - m.b });
    el(svg, 'line', { class: 'axis', x1: m.l, y1: m.t, x2: m.l, y2: H - m.b });
    if (n === 0) { el(svg, 'text', { class: 'empty', x: W / 2 - 40, y: H / 2 }, 'no results'); return; }
    const files = done.map((d, i) => (d + failed[i]) / slot);
    const mbs = bytesv.map(b => b / slot / 1e6);
    const fmax = Math.max(1, ...files), bmax = Math.max(1e-9, ...mbs);
    const x = i => m.l + (n === 1 ? (W - m.l - m.r) / 2 : (i / (n - 1)) * (W - m.l - m.r));
    const yf = v => H - m.b - (v / fmax) * (H - m.t - m.b);
    const yb = v => H - m.b - (v / bmax) * (H - m.t - m.b);
    const path = (vals, y) => vals.map((v, i) => (i ? 'L' : 'M') + x(i).toFixed(1) + ' ' + y(v).toFixed(1)).join(' ');
    el(svg, 'path', { class: 'files', d: path(files, yf) + (n === 1 ? ' h 1' : '') });
    el(svg, 'path', { class: 'bytes', d: path(mbs, yb) + (n === 1 ? ' h 1' : '') });
    el(svg, 'text', { x: 4, y: m.t + 10 }, num(fmax, 1) + ' files/s');
    el(svg, 'text', { x: W - m.r + 4, y: m.t + 10 }, num(bmax, 1) + ' MB/s');
    el(svg, 'text', { x: 4, y: H - m.b }, '0');
    el(svg, 'text', { x: m.l, y: H - 10 }, '0 s');
    el(svg, 'text', { x: W - m.r - 40, y: H - 10 }, num(n * slot, 1) + ' s');
    el(svg, 'text', { x: W / 2 - 110, y: H - 10 }, 'time (solid: files/s, dashed: MB/s)');
  })();

  // Latency histogram: the report's buckets regrouped into at most 40 log-spaced bars.
  (function () {
    const svg = document.getElementById('latency');
    const W = 860, H = 260, m = { l: 60, r: 20, t: 14, b: 34 };
    const hist = data.latency_histogram_ms;
    el(svg, 'line', { class: 'axis', x1: m.l, y1: H - m.b, x2: W - m.r, y2: H - m.b });
    if (!hist.length) { el(svg, 'text', { class: 'empty', x: W / 2 - 40, y: H / 2 }, 'no transfers'); return; }
    const lo = Math.max(1, hist[0].lower), hi = Math.max(lo + 1, hist[hist.length - 1].upper + 1);
    const nb = Math.min(40, hist.length);
    const edges = [];
    for (let i = 0; i <= nb; i++) edges.push(lo * Math.pow(hi / lo, i / nb));
    const counts = new Array(nb).fill(0);
    for (const b of hist) {
      let i = 0;
      while (i < nb - 1 && Math.max(1, b.lower) >= edges[i + 1]) i++;
      counts[i] += b.count;
    }
    const cmax = Math.max(...counts), bw = (W - m.l - m.r) / nb;
    counts.forEach((c, i) => {
      const h = (c / cmax) * (H - m.t - m.b);
      el(svg, 'rect', { class: 'bar', x: (m.l + i * bw + 1).toFixed(1), y: (H - m.b - h).toFixed(1),
                        width: Math.max(1, bw - 2).toFixed(1), height: Math.max(c ? 1 : 0, h).toFixed(1) },
         undefined).appendChild(document.createElementNS(NS, 'title')).textContent =
         Math.round(edges[i]) + '-' + Math.round(edges[i + 1]) + ' ms: ' + c;
    });
    el(svg, 'text', { x: m.l, y: H - 10 }, Math.round(lo) + ' ms');
    el(svg, 'text', { x: W - m.r - 60, y: H - 10 }, Math.round(hi) + ' ms');
    el(svg, 'text', { x: W / 2 - 80, y: H - 10 }, 'latency (log scale)');
    el(svg, 'text', { x: 4, y: m.t + 10 }, num(cmax));
  })();

  // Horizontal bars: one per label.
  function bars(id, items, cls, label) {
    const svg = document.getElementById(id);
    const rowH = 24, W = 860, left = 190, right = 320;
    const H = Math.max(1, items.length) * rowH + 10;
    svg.setAttribute('height', H);
    svg.setAttribute('viewBox', '0 0 ' + W + ' ' + H);
    if (!items.length) { el(svg, 'text', { class: 'empty', x: 10, y: 20 }, 'none'); return; }
    const vmax = Math.max(1, ...items.map(it => it.value));
    items.forEach((it, i) => {
      const y = 5 + i * rowH;
      el(svg, 'text', { x: 6, y: y + 15 }, it.name.length > 32 ? it.name.slice(0, 31) + '…' : it.name);
      el(svg, 'rect', { class: cls, x: left, y: y + 3, height: rowH - 8,
                        width: Math.max(1, (it.value / vmax) * (W - left - right)).toFixed(1) });
      el(svg, 'text', { x: W - right + 8, y: y + 15 }, label(it));
    });
  }
  bars('nodes', data.nodes.map(n => ({ name: n.node, value: n.done + n.failed, n })), 'bar',
       it => num(it.n.done) + ' done, ' + bytes(it.n.bytes) + ', ' + num(it.n.failed) + ' failed, ' +
             num(it.n.requeued) + ' re-sent');
  bars('failures', data.failures.map(f => ({ name: f.reason, value: f.count, f })), 'fail',
       it => num(it.f.count));
  document.body.setAttribute('data-rendered', '1');
})();
</script>
</body>
</html>
)html";

} // namespace

std::string render_html(const json& report) {
  // Inside <script>, "</script" must not appear: '<' only occurs inside JSON strings, where the
  // escape \u003c means the same character.
  std::string data = dump_json(report);
  std::string safe;
  safe.reserve(data.size());
  for (char c : data) {
    if (c == '<') safe += "\\u003c";
    else safe += c;
  }
  return std::string(kHtmlHead) + safe + kHtmlTail;
}

void write_file_atomic(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw std::runtime_error("cannot create " + tmp);
    out << text;
    out.flush();
    if (!out) throw std::runtime_error("cannot write " + tmp);
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) throw std::runtime_error("cannot rename " + tmp + " to " + path + ": " + ec.message());
}

ManifestRow manifest_row(const proto::Result& r) {
  ManifestRow row;
  row.id = r.id;
  row.url = r.url;
  row.path = r.path;
  row.node = r.node;
  row.status = r.status == proto::Status::done ? "done" : "failed";
  row.http_code = r.http_code;
  row.bytes = r.bytes;
  row.sha256 = r.sha256;
  row.attempts = r.attempt;
  row.ms = r.ms;
  row.ttfb_ms = r.ttfb_ms;
  if (r.status == proto::Status::failed) row.reason = std::string(proto::reason_name(r.reason));
  row.error = r.detail;
  row.meta = r.meta;
  return row;
}

namespace {

bool ends_with_ci(const std::string& s, std::string_view suffix) {
  if (s.size() < suffix.size()) return false;
  for (std::size_t i = 0; i < suffix.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(s[s.size() - suffix.size() + i])) != suffix[i]) return false;
  return true;
}

// RFC 4180: quoted when it holds a comma, a quote or a line break; quotes doubled.
std::string csv_field(const std::string& v) {
  if (v.find_first_of(",\"\r\n") == std::string::npos) return v;
  std::string out = "\"";
  for (char c : v) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

} // namespace

void json_string(std::string& out, std::string_view s) {
  out += '"';
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      const std::size_t n = utf8_sequence_length(s, i);
      if (n == 0) {
        out += "\xEF\xBF\xBD"; // U+FFFD for a byte that is not valid UTF-8
        ++i;
      } else {
        out.append(s.substr(i, n));
        i += n;
      }
      continue;
    }
    switch (c) {
    case '"': out += "\\\""; break;
    case '\\': out += "\\\\"; break;
    case '\n': out += "\\n"; break;
    case '\r': out += "\\r"; break;
    case '\t': out += "\\t"; break;
    default:
      if (c < 0x20 || c == 0x7f) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\u%04x", c);
        out += buf;
      } else {
        out += static_cast<char>(c);
      }
    }
    ++i;
  }
  out += '"';
}

namespace {

void open_or_throw(std::ofstream& out, const std::string& path) {
  out.open(path, std::ios::binary | std::ios::trunc);
  if (!out) throw std::runtime_error("cannot create " + path);
}

// Flushes and closes (once); a write that failed on the way, or the flush, throws.
void close_or_throw(std::ofstream& out, const std::string& path) {
  if (!out.is_open()) return;
  out.flush();
  const bool ok = static_cast<bool>(out);
  out.close();
  if (!ok) throw std::runtime_error("cannot write " + path);
}

} // namespace

ManifestWriter::ManifestWriter(const std::string& path) : path_(path), csv_(ends_with_ci(path, ".csv")) {
  open_or_throw(out_, path);
  if (csv_) out_ << "id,url,path,node,status,http_code,bytes,sha256,attempts,ms,ttfb_ms,reason,error,meta\n";
}

std::string_view ManifestWriter::checked_meta(const ManifestRow& r) {
  if (r.meta.empty()) return {};
  // A JSON text whose first token is "{" is an object. accept() also refuses invalid UTF-8.
  const auto first = r.meta.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && r.meta[first] == '{' && nlohmann::json::accept(r.meta)) {
    // Outside strings, where they cannot be raw, line breaks are blanks between tokens.
    if (r.meta.find_first_of("\r\n") == std::string::npos) return r.meta;
    meta_ = nlohmann::json::parse(r.meta).dump();
    return meta_;
  }
  if (++bad_meta_ <= 5)
    spdlog::warn("{}: link {}: its meta is not a JSON object; written as {}{}", path_, r.id, csv_ ? "empty" : "null",
                 bad_meta_ == 5 ? " (further ones not logged)" : "");
  return {};
}

void ManifestWriter::write(const ManifestRow& r) {
  const std::string_view meta = checked_meta(r);
  if (csv_) {
    out_ << r.id << ',' << csv_field(r.url) << ',' << csv_field(r.path) << ',' << csv_field(r.node) << ','
         << r.status << ',' << r.http_code << ',' << r.bytes << ',' << r.sha256 << ',' << r.attempts << ','
         << (r.ms ? std::to_string(*r.ms) : "") << ',' << (r.ttfb_ms ? std::to_string(*r.ttfb_ms) : "")
         << ',' << r.reason << ',' << csv_field(r.error) << ',' << csv_field(std::string(meta)) << '\n';
  } else {
    // Written by hand, not through a json object: this runs once per link, in the sink's loop.
    line_.clear();
    line_ += "{\"id\":";
    line_ += std::to_string(r.id);
    auto field = [this](const char* key, std::string_view value) {
      line_ += ",\"";
      line_ += key;
      line_ += "\":";
      json_string(line_, value);
    };
    auto number = [this](const char* key, std::optional<std::uint64_t> value) {
      line_ += ",\"";
      line_ += key;
      line_ += "\":";
      line_ += value ? std::to_string(*value) : std::string("null");
    };
    field("url", r.url);
    field("path", r.path);
    field("node", r.node);
    field("status", r.status);
    number("http_code", r.http_code);
    number("bytes", r.bytes);
    field("sha256", r.sha256);
    number("attempts", r.attempts);
    number("ms", r.ms ? std::optional<std::uint64_t>(*r.ms) : std::nullopt);
    number("ttfb_ms", r.ttfb_ms ? std::optional<std::uint64_t>(*r.ttfb_ms) : std::nullopt);
    field("reason", r.reason);
    field("error", r.error);
    line_ += ",\"meta\":";
    if (meta.empty()) line_ += "null";
    else line_ += meta; // checked above: a JSON object, valid UTF-8, on one line
    line_ += "}\n";
    out_ << line_;
  }
  ++rows_;
  if (!out_) throw std::runtime_error("cannot write " + path_);
}

void ManifestWriter::close() { close_or_throw(out_, path_); }

UrlListWriter::UrlListWriter(const std::string& path) : path_(path) { open_or_throw(out_, path); }

void UrlListWriter::write(const std::string& url) {
  if (url.empty() || url.find_first_of("\r\n") != std::string::npos) {
    spdlog::warn("{}: a URL with a line break is left out", path_);
    return;
  }
  out_ << url << '\n';
  ++rows_;
  if (!out_) throw std::runtime_error("cannot write " + path_);
}

void UrlListWriter::close() { close_or_throw(out_, path_); }

std::uint64_t for_each_ledger_row(const std::string& ledger_path,
                                  const std::function<bool(std::uint64_t)>& have,
                                  const std::function<void(const ManifestRow&)>& fn) {
  sqlite3* db = nullptr;
  auto fail = [&](const std::string& what) {
    std::string msg = "ledger " + ledger_path + ": " + what + (db ? std::string(": ") + sqlite3_errmsg(db) : "");
    if (db) sqlite3_close(db);
    throw std::runtime_error(msg);
  };
  if (sqlite3_open_v2(ledger_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) fail("cannot open");
  sqlite3_busy_timeout(db, 5000);
  sqlite3_stmt* st = nullptr;
  // A ledger written before links had meta has no such column (the ventilator adds it on open).
  bool has_meta = false;
  if (sqlite3_prepare_v2(db, "SELECT 1 FROM pragma_table_info('links') WHERE name = 'meta'", -1, &st, nullptr) !=
      SQLITE_OK)
    fail("cannot read");
  has_meta = sqlite3_step(st) == SQLITE_ROW;
  sqlite3_finalize(st);
  st = nullptr;
  const std::string sql = std::string("SELECT id, url, name, state, attempts, node, path, http_code, bytes, sha256, "
                                      "reason, detail, ") +
                          (has_meta ? "meta" : "NULL") + " FROM links ORDER BY id";
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) fail("cannot read");
  // fn may throw (a full disk under the manifest): the statement and the handle are closed anyway.
  struct Closer {
    sqlite3*& db;
    sqlite3_stmt*& st;
    ~Closer() {
      if (st) sqlite3_finalize(st);
      if (db) sqlite3_close(db);
    }
  } closer{db, st};
  auto text = [st](int col) {
    const auto* p = sqlite3_column_text(st, col);
    return p ? std::string(reinterpret_cast<const char*>(p), static_cast<std::size_t>(sqlite3_column_bytes(st, col)))
             : std::string();
  };
  std::uint64_t n = 0;
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    const auto id = static_cast<std::uint64_t>(sqlite3_column_int64(st, 0));
    if (have(id)) continue;
    ManifestRow row;
    row.id = id;
    row.url = text(1);
    const int state = sqlite3_column_int(st, 3);
    row.status = state == 2 ? "skipped" : state == 3 ? "failed" : "pending";
    row.attempts = static_cast<std::uint32_t>(sqlite3_column_int64(st, 4));
    row.node = text(5);
    row.path = text(6);
    row.http_code = static_cast<std::uint32_t>(sqlite3_column_int64(st, 7));
    row.bytes = static_cast<std::uint64_t>(sqlite3_column_int64(st, 8));
    row.sha256 = text(9);
    const auto reason = proto::reason_from_number(static_cast<std::uint64_t>(sqlite3_column_int64(st, 10)));
    if (state == 3) row.reason = std::string(proto::reason_name(reason.value_or(proto::Reason::other)));
    row.error = text(11);
    row.meta = text(12);
    if (state != 2 && state != 3) row.node.clear();
    fn(row);
    ++n;
  }
  sqlite3_finalize(st);
  st = nullptr;
  if (rc != SQLITE_DONE) {
    const std::string msg = "ledger " + ledger_path + ": read failed: " + sqlite3_errmsg(db);
    throw std::runtime_error(msg);
  }
  return n;
}

} // namespace trawl::broker
