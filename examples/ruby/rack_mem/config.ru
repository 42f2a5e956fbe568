# A Rack app with about 40 MB of state built at boot, for bench/memory.sh: distinct strings and
# integers, as an app builds its caches and lookup tables when it loads. GET / answers JSON with
# the pid that served it, after reading 8 entries of the state at random.
#
#   puma -w 4 examples/ruby/rack_mem/config.ru
#   narwhal puma --bind-to-activated-sockets only --config examples/ruby/puma.rb examples/ruby/rack_mem/config.ru
#   NARWHAL_PRELOAD=true narwhal puma …   (the same; the state is built once, in the template)

require "json"

N = 600_000
WORDS = Array.new(N) { |i| format("entry-%07d", i) }.freeze
NUMBERS = Array.new(N) { |i| 1_000_000_007 + 7 * i }.freeze

if ENV["NARWHAL_FORK_FD"]
  require_relative "../../../contrib/ruby/narwhal_fork"
  NarwhalFork.fork_point
end

run lambda { |_env|
  picks = Array.new(8) { rand(N) }
  sum = picks.sum { |i| WORDS[i].bytesize + NUMBERS[i] }
  body = JSON.generate(pid: Process.pid, entries: WORDS.size, sum: sum) + "\n"
  [200, { "Content-Type" => "application/json", "Content-Length" => body.bytesize.to_s }, [body]]
}
