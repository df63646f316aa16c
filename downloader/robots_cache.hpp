// --respect-robots: the downloader's robots.txt of every origin (scheme://host:port) it fetches
// from, read once per process through the worker's own multi handle (never blocking the loop)
// and kept for 24 hours (RFC 9309 2.4). Tasks of an origin whose robots.txt is on its way are
// parked here and handed back when it has come. What an answer means (RFC 9309 2.3.1):
//   2xx                     the file's rules for our product token (robots.hpp)
//   4xx, > 5 redirects      "unavailable": everything allowed
//   5xx, network error      "unreachable": everything disallowed (the RFC's MUST; such links
//                           fail with reason robots, and --failed lists them for a later run)
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "downloader/address_policy.hpp"
#include "downloader/curl_handles.hpp"
#include "downloader/robots.hpp"
#include "proto/messages.hpp"

namespace trawl::downloader {

struct RobotsSettings {
  std::string user_agent;                 // sent, and its product token picks the group
  long connect_timeout_s = 10;            // at most this, whatever --connect-timeout says
  long timeout_s = 20;                    // the whole fetch of one robots.txt
  AddressFilter address_filter = nullptr; // --deny-private applies to robots.txt too
};

// Where a URL stands.
struct RobotsVerdict {
  enum class State { allowed, refused, wait } state = State::allowed;
  std::string detail; // for refused: why, for the result's detail
};

// The store of rules, the fetches under way and the tasks parked until their origin's file comes.
class RobotsCache {
public:
  using Clock = std::chrono::steady_clock;
  static constexpr auto kKeep = std::chrono::hours(24);
  static constexpr std::size_t kMaxOrigins = 10000; // then the older half is forgotten

  // `multi` drives the fetches and must outlive this.
  RobotsCache(CurlMulti& multi, RobotsSettings s);
  ~RobotsCache();
  RobotsCache(const RobotsCache&) = delete;
  RobotsCache& operator=(const RobotsCache&) = delete;

  // The verdict on `url`. wait: robots.txt of its origin is on its way (its fetch started here
  // when it was not), and `task` is parked until then. A URL that does not parse is allowed: the
  // transfer reports it properly. Throws CurlError when a fetch cannot be set up.
  RobotsVerdict check(const proto::Task& task, Clock::time_point now);

  // When `easy` is one of the robots.txt fetches: ends it (removed from the multi, rules stored)
  // and returns the tasks that waited for it (check() them again). nullopt: not ours.
  std::optional<std::vector<proto::Task>> on_done(CURL* easy, CURLcode code, Clock::time_point now);

  // Every parked task, given back (at stop); fetches under way are abandoned.
  std::vector<proto::Task> take_parked();

  std::size_t parked() const noexcept { return parked_count_; }
  std::size_t fetching() const noexcept { return fetches_.size(); }
  std::uint64_t fetched() const noexcept { return fetched_; }

  // URL -> origin ("http://host:port", lower-case scheme and host) and path ("/a/b?q"); false
  // when the URL does not parse.
  static bool split_url(const std::string& url, std::string& origin, std::string& path);

private:
  struct Fetch;
  struct Known {
    RobotsRules rules;
    std::string why; // set when the file could not be read ("HTTP 503"): everything is refused
    Clock::time_point at;
  };
  void start(const std::string& origin);
  void forget_older_half();

  CurlMulti& multi_;
  RobotsSettings settings_;
  std::string token_;
  std::unordered_map<std::string, Known> known_;
  std::unordered_map<CURL*, std::unique_ptr<Fetch>> fetches_;
  std::unordered_map<std::string, std::vector<proto::Task>> parked_;
  std::size_t parked_count_ = 0;
  std::uint64_t fetched_ = 0;
};

} // namespace trawl::downloader
