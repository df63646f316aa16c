#include "broker/scheduler.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace trawl::broker {

std::vector<std::uint64_t> share_out(std::uint64_t tasks,
                                     const std::vector<std::uint64_t>& credits) {
  std::uint64_t total = 0;
  for (auto c : credits) total += c;
  if (tasks >= total) return credits;
  std::vector<std::uint64_t> share(credits.size());
  std::vector<std::pair<std::uint64_t, std::size_t>> rest; // (remainder, peer), largest first
  std::uint64_t given = 0;
  for (std::size_t i = 0; i < credits.size(); ++i) {
    // tasks < total: in 128 bits the product cannot wrap.
    __extension__ using u128 = unsigned __int128;
    const auto exact = static_cast<u128>(tasks) * credits[i];
    share[i] = static_cast<std::uint64_t>(exact / total);
    given += share[i];
    rest.emplace_back(static_cast<std::uint64_t>(exact % total), i);
  }
  std::stable_sort(rest.begin(), rest.end(),
                   [](const auto& a, const auto& b) { return a.first > b.first; });
  for (std::size_t k = 0; given < tasks && k < rest.size(); ++k, ++given) ++share[rest[k].second];
  return share;
}

namespace {

// Rows read ahead per host and query: small, so a row seldom goes stale in memory, and large
// enough that a busy host costs one indexed query per this many dispatches.
constexpr std::size_t kReadAhead = 16;

char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

} // namespace

std::string host_key(std::string_view url) {
  const auto sep = url.find("://");
  if (sep == std::string_view::npos) return "";
  std::string scheme(url.substr(0, sep));
  for (auto& c : scheme) c = lower(c);
  std::string_view auth = url.substr(sep + 3);
  auth = auth.substr(0, auth.find_first_of("/?#"));
  if (const auto at = auth.rfind('@'); at != std::string_view::npos) auth.remove_prefix(at + 1);
  std::string_view host, port;
  if (!auth.empty() && auth.front() == '[') {
    const auto close = auth.find(']');
    if (close == std::string_view::npos) return "";
    host = auth.substr(0, close + 1);
    const auto rest = auth.substr(close + 1);
    if (!rest.empty() && rest.front() == ':') port = rest.substr(1);
  } else {
    const auto colon = auth.find(':');
    host = auth.substr(0, colon);
    if (colon != std::string_view::npos) port = auth.substr(colon + 1);
  }
  if (host.size() > 1 && host.back() == '.') host.remove_suffix(1);
  if (host.empty()) return "";
  std::string key(host);
  for (auto& c : key) c = lower(c);
  while (port.size() > 1 && port.front() == '0') port.remove_prefix(1);
  const bool default_port = (scheme == "http" && port == "80") || (scheme == "https" && port == "443");
  if (!port.empty() && !default_port) key.append(":").append(port);
  return key;
}

std::optional<std::pair<std::string, double>> parse_host_rate(std::string_view s) {
  const auto eq = s.rfind('=');
  if (eq == std::string_view::npos || eq == 0) return std::nullopt;
  const std::string value(s.substr(eq + 1));
  double rate = 0;
  try {
    std::size_t used = 0;
    rate = std::stod(value, &used);
    if (used != value.size()) return std::nullopt;
  } catch (const std::exception&) {
    return std::nullopt;
  }
  if (!(rate >= 0) || rate > 1e6) return std::nullopt;
  // The key as host_key() makes it, whether given as "host", "host:port" or a URL.
  std::string host(s.substr(0, eq));
  std::string key = host_key(host.find("://") == std::string::npos ? "http://" + host : host);
  if (key.empty()) return std::nullopt;
  return std::make_pair(std::move(key), rate);
}

namespace {

std::chrono::nanoseconds spacing_for(double rate) {
  if (rate <= 0) return std::chrono::nanoseconds(0);
  return std::chrono::nanoseconds(static_cast<std::int64_t>(std::llround(1e9 / rate)));
}

} // namespace

HostScheduler::HostScheduler(const SchedulerLimits& limits, PendingSource& source)
    : limits_(limits), source_(source) {}

HostScheduler::Host& HostScheduler::host(const std::string& name) {
  auto [it, fresh] = hosts_.try_emplace(name);
  if (fresh) {
    it->second.name = name;
    const auto rate = limits_.host_rates.find(name);
    it->second.spacing =
        spacing_for(rate != limits_.host_rates.end() ? rate->second : limits_.rate_per_host);
  }
  return it->second;
}

std::uint32_t HostScheduler::out(const std::string& name) const {
  const auto it = hosts_.find(name);
  return it == hosts_.end() ? 0 : it->second.out;
}

void HostScheduler::add_pending(const std::string& name) {
  Host& h = host(name);
  h.more = true;
  place(h, Clock::now());
}

void HostScheduler::requeue(std::uint64_t id, const std::string& name) {
  Host& h = host(name);
  h.returned.push_back(id);
  place(h, Clock::now());
}

void HostScheduler::adopt(const std::string& name) {
  Host& h = host(name);
  ++h.out;
  max_out_ = std::max(max_out_, h.out);
}

void HostScheduler::finished(const std::string& name, Clock::time_point now) {
  const auto it = hosts_.find(name);
  if (it == hosts_.end()) return;
  if (it->second.out > 0) --it->second.out;
  place(it->second, now);
}

void HostScheduler::unpick(const Pick& p) {
  Host& h = host(p.host);
  if (h.out > 0) --h.out;
  h.returned.push_front(p.task.id);
  place(h, Clock::now());
}

void HostScheduler::drop(const std::string& name) { finished(name, Clock::now()); }

void HostScheduler::pause(const std::string& name, std::chrono::milliseconds wait,
                          Clock::time_point now) {
  Host& h = host(name);
  const auto until = now + std::min(wait, limits_.max_pause);
  if (until > h.not_before) h.not_before = until;
  place(h, now);
}

void HostScheduler::place(Host& h, Clock::time_point now) {
  auto arm = [this, &h](Clock::time_point t) {
    if (h.timer == t) return;
    h.timer = t;
    timers_.emplace(t, h.name);
  };
  if (!has_work(h)) {
    if (h.out > 0) return; // finished() comes back here
    if (h.not_before > now) arm(h.not_before); // remember a pause until it is over
    else hosts_.erase(hosts_.find(h.name)); // by iterator: h.name lives in the node
    return;
  }
  if (!under_cap(h)) return; // finished() comes back here
  if (h.not_before > now) {
    arm(h.not_before);
    return;
  }
  if (!h.queued) {
    h.queued = true;
    ready_.push_back(h.name);
  }
}

void HostScheduler::release_timers(Clock::time_point now) {
  while (!timers_.empty() && timers_.top().first <= now) {
    const Timer t = timers_.top();
    timers_.pop();
    const auto it = hosts_.find(t.second);
    if (it == hosts_.end() || it->second.timer != t.first) continue; // stale
    it->second.timer = {};
    place(it->second, now);
  }
}

std::optional<TaskRow> HostScheduler::take(Host& h) {
  while (!h.returned.empty()) {
    const auto id = h.returned.front();
    h.returned.pop_front();
    if (auto row = source_.pending_task(id)) return row;
  }
  if (h.ahead.empty() && h.more) {
    auto rows = source_.pending_of_host(h.name, h.cursor, kReadAhead);
    h.more = rows.size() == kReadAhead;
    if (!rows.empty()) h.cursor = rows.back().id;
    for (auto& r : rows) h.ahead.push_back(std::move(r));
  }
  if (h.ahead.empty()) return std::nullopt;
  TaskRow row = std::move(h.ahead.front());
  h.ahead.pop_front();
  return row;
}

std::optional<HostScheduler::Pick> HostScheduler::next(Clock::time_point now) {
  release_timers(now);
  while (!ready_.empty()) {
    const std::string name = std::move(ready_.front());
    ready_.pop_front();
    const auto it = hosts_.find(name);
    if (it == hosts_.end() || !it->second.queued) continue; // stale entry
    Host& h = it->second;
    h.queued = false;
    if (!under_cap(h) || h.not_before > now) {
      place(h, now);
      continue;
    }
    auto row = take(h);
    if (!row) {
      place(h, now);
      continue;
    }
    ++h.out;
    max_out_ = std::max(max_out_, h.out);
    if (h.spacing.count() > 0) h.not_before = std::max(h.not_before, now) + h.spacing;
    Pick p{std::move(*row), h.name};
    place(h, now); // to the back of the ring when it may take another: round-robin
    return p;
  }
  return std::nullopt;
}

bool HostScheduler::ready(Clock::time_point now) {
  release_timers(now);
  return !ready_.empty();
}

std::optional<HostScheduler::Clock::time_point> HostScheduler::next_wakeup() const {
  if (timers_.empty()) return std::nullopt;
  return timers_.top().first;
}

void HostScheduler::rescan() {
  const auto now = Clock::now();
  std::vector<std::string> names;
  names.reserve(hosts_.size());
  for (auto& [name, h] : hosts_) {
    h.cursor = 0;
    h.more = true;
    h.ahead.clear();
    names.push_back(name);
  }
  for (const auto& name : names)
    if (auto it = hosts_.find(name); it != hosts_.end()) place(it->second, now);
}

} // namespace trawl::broker
