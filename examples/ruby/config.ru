# The same small app for the Ruby servers (puma, unicorn). GET / answers with the pid of the
# process that served it, NARWHAL_WORKER_ID and NARWHAL_GENERATION.
#
# BOOT_DELAY (such as 300ms or 5s) makes loading take that long, like a real app loading its
# code; BOOT_FAIL=1 makes it raise instead, like a release that is broken at boot.
#
#   puma --bind-to-activated-sockets only --config examples/ruby/puma.rb examples/ruby/config.ru
#
# With NARWHAL_PRELOAD=true narwhal starts it once as a template that waits at the fork point,
# once loaded, and forks the workers from there (contrib/ruby/narwhal_fork.rb).

require "json"

delay = ENV.fetch("BOOT_DELAY", "")[/\A(\d+(?:\.\d+)?)(ms|s)?\z/] ? $1.to_f / ($2 == "ms" ? 1000 : 1) : 0
sleep delay
raise "BOOT_FAIL=1: this release is broken at boot" if ENV["BOOT_FAIL"] == "1"

if ENV["NARWHAL_FORK_FD"]
  # Beside the app, as a user copies it, or in this repository.
  require_relative(File.exist?(File.join(__dir__, "narwhal_fork.rb")) ? "narwhal_fork" : "../../contrib/ruby/narwhal_fork")
  NarwhalFork.fork_point
end

run lambda { |_env|
  body = JSON.generate(pid: Process.pid, worker_id: ENV.fetch("NARWHAL_WORKER_ID", ""),
                       generation: ENV.fetch("NARWHAL_GENERATION", ""),
                       listen_pid: ENV.fetch("LISTEN_PID", "")) + "\n"
  [200, { "Content-Type" => "application/json", "Content-Length" => body.bytesize.to_s }, [body]]
}
