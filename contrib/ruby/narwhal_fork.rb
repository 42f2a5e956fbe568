# narwhal's fork point for Ruby apps (NARWHAL_PRELOAD=true). Copy this file beside your app.
#
# With NARWHAL_PRELOAD=true narwhal starts COMMAND once per generation as a template. The template
# loads the app and calls NarwhalFork.fork_point; from then on it only forks workers on narwhal's
# request, so the workers share the memory of the loaded app. fork_point returns in each worker,
# with that worker's sockets, pipes and environment in place, as if narwhal had started it.
# Without NARWHAL_FORK_FD in the environment it returns at once, so the same app runs unchanged
# without preload.
#
# puma 5 and later, single mode (workers 0), at the end of config.ru, before `run`:
#
#   require_relative "config/environment"   # the app, loaded once in the template
#   if ENV["NARWHAL_FORK_FD"]
#     require_relative "narwhal_fork"
#     NarwhalFork.fork_point
#   end
#   run Rails.application
#
#   NARWHAL_PRELOAD=true narwhal puma --bind-to-activated-sockets only --config puma.rb config.ru
#
# puma reads LISTEN_FDS when it starts, before it loads config.ru, and wraps fds 3.. in server
# objects there, in the template. Those objects hold fd numbers, not sockets: each worker puts
# the sockets narwhal gives it at the same numbers (dup2), so puma, carrying on after config.ru
# in the worker, serves the worker's own sockets. puma's signal handlers are in place by then too:
# SIGTERM stops a worker gracefully.
#
# Before it reports ready, fork_point compacts the heap (fork_point(compact: false) does not), so
# that the objects the workers share sit on fewer pages, as puma's nakayoshi_fork does.
#
# The protocol with narwhal (version 1), on the AF_UNIX SOCK_SEQPACKET socket at NARWHAL_FORK_FD,
# is described in narwhal_fork.py beside this file.

require "fiddle"
require "socket"

module NarwhalFork
  PR_SET_PDEATHSIG = 1
  F_DUPFD_CLOEXEC = 1030 # Linux; Ruby's Fcntl lacks it
  SIGKILL = 9
  LIBC = Fiddle.dlopen(nil)
  PRCTL = Fiddle::Function.new(LIBC["prctl"], [Fiddle::TYPE_INT, Fiddle::TYPE_LONG], Fiddle::TYPE_INT)
  DUP2 = Fiddle::Function.new(LIBC["dup2"], [Fiddle::TYPE_INT, Fiddle::TYPE_INT], Fiddle::TYPE_INT)
  CLOSE = Fiddle::Function.new(LIBC["close"], [Fiddle::TYPE_INT], Fiddle::TYPE_INT)

  # Returns in each worker narwhal asks for; never returns in the template.
  def self.fork_point(compact: true)
    fd = ENV["NARWHAL_FORK_FD"] or return
    # Out of the way of the fd numbers narwhal gives the workers (1, 2, 3.. and the notify pipe).
    given = IO.for_fd(Integer(fd))
    sock = Socket.for_fd(given.fcntl(F_DUPFD_CLOEXEC, 100))
    given.close
    # puma's SIGTERM handler would only log in the template: make it stop. Workers get it back.
    traps = %w[TERM INT].to_h { |sig| [sig, trap(sig, "SYSTEM_DEFAULT")] }
    GC.compact if compact && GC.respond_to?(:compact)
    flush
    sock.sendmsg("READY")
    loop do
      data, _, _, *ctls = sock.recvmsg(65536, 0, nil, scm_rights: true)
      ios = ctls.select { |c| c.cmsg_is?(:SOCKET, :RIGHTS) }.flat_map(&:unix_rights)
      exit!(0) if data.empty? && ios.empty? # narwhal closed the socket: it is stopping this template, or gone
      lines = data.split("\n")
      id = lines.first.to_s[/\AFORK (\S+)\z/, 1]
      targets = lines.grep(/\AFD /).map { |l| Integer(l[3..]) }
      env = lines.grep(/\AENV [^=]+=/).to_h { |l| l[4..].split("=", 2) }
      if id.nil?
        # not a FORK: a message from a later protocol version
      elsif targets.size != ios.size
        reply(sock, "ERROR #{id} #{ios.size} descriptors came with #{targets.size} FD lines")
      else
        flush # or each worker would write the template's buffered output again
        begin
          child = fork
        rescue SystemCallError => e
          reply(sock, "ERROR #{id} fork: #{e.message}")
        else
          if child.nil?
            become_worker(sock, id, ios, targets, env)
            traps.each { |sig, handler| trap(sig, handler) if handler }
            return
          end
          Process.waitpid(child)
          reply(sock, "ERROR #{id} fork: the intermediate child ended with #{$?}") unless $?.success? # its own fork failed
        end
      end
      ios.each(&:close)
    end
  end

  # In the first child: fork the worker and exit. In the worker: set it up and return.
  def self.become_worker(sock, id, ios, targets, env)
    middle = Process.pid
    begin
      exit!(0) if fork
    rescue SystemCallError => e
      warn "narwhal_fork: fork: #{e.message}"
      exit!(1)
    end
    # Until the first child is gone and the kernel has handed this process to narwhal, a
    # parent-death signal would fire at the first child's exit.
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 5
    while Process.ppid == middle
      exit!(1) if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline
      sleep 0.001
    end
    parent = Process.ppid
    exit!(1) unless PRCTL.call(PR_SET_PDEATHSIG, SIGKILL).zero?
    exit!(1) if Process.ppid != parent # narwhal died before the signal was set: nobody would kill this worker
    Process.setpgid(0, 0)
    # Above every target first, so that placing one descriptor cannot overwrite another.
    top = [*targets, 2].max + 1
    moved = ios.map { |io| io.fcntl(F_DUPFD_CLOEXEC, top) }
    ios.each(&:close)
    moved.zip(targets) do |from, target|
      DUP2.call(from, target) # not close-on-exec, as narwhal would have passed it
      CLOSE.call(from)
    end
    env.each { |k, v| ENV[k] = v }
    ENV["LISTEN_PID"] = Process.pid.to_s if ENV["LISTEN_FDS"]
    exit!(1) unless reply(sock, "FORKED #{id}")
    sock.close
    ENV.delete("NARWHAL_FORK_FD")
  end

  def self.reply(sock, text)
    sock.sendmsg(text)
    true
  rescue SystemCallError
    false
  end

  def self.flush
    $stdout.flush
    $stderr.flush
  end
  private_class_method :become_worker, :reply, :flush
end
