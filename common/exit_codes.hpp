// Documented exit statuses, shared by every subcommand and by launch/pipeline.
#pragma once

namespace trawl {

inline constexpr int kExitOk = 0;        // every link done
inline constexpr int kExitSomeFailed = 1; // the job ran, some links failed
inline constexpr int kExitUsage = 2;     // bad flags or configuration
inline constexpr int kExitFatal = 3;     // could not run (bind failed, source unreadable, API refused)
inline constexpr int kExitInterrupted = 130;

} // namespace trawl
