import Foundation
import PylonJSON
import PylonPluginABI
import PylonPluginKit
#if canImport(Glibc)
import Glibc
#endif

/// Watching the children from the supervisor thread: the readiness gauge, the memory limit,
/// the functions folder's signature (reloading on file changes).
extension WorkerPool {
    /// Sets the host gauge `fn_workers_ready` (children taking calls) when it changed.
    /// Pool lock held.
    func publishReady() {
        let n = workers.reduce(0) { $0 + ($1.isReady ? 1 : 0) }
        guard n != publishedReady else { return }
        publishedReady = n
        let host = log.host
        let name = "fn_workers_ready"
        name.utf8CString.withUnsafeBufferPointer { c in
            host.pointee.gauge_set?(host.pointee.host_ctx, c.baseAddress, c.count - 1, Double(n))
        }
    }

    func supervise() {
        lock.lock()
        while !stopping {
            _ = lock.wait(until: Date().addingTimeInterval(0.02))
            if stopping { break }
            let now = monotonicSeconds()
            // With the pid of the child running each, read now: it may be replaced later.
            // Only a child still taking calls is killed (and marked so no new call goes to
            // it; its reader respawns it). One already gone keeps its state: marking a
            // worker waiting to respawn as stopped left it stopped for good, when the calls
            // it had outlived it (24,000 nested calls took longer to fail than a pass).
            var expired: [(call: Call, ranOn: Bool, pid: pid_t?)] = []
            for c in calls.values where c.deadline <= now {
                var victim: pid_t?
                if let w = c.worker, w.pid > 0 {
                    switch w.state {
                    case .ready, .starting:
                        victim = w.pid
                        w.state = .stopped
                    default: break
                    }
                }
                expired.append((c, c.worker != nil, victim))
            }
            if now - lastScan >= 0.5 {
                lastScan = now
                checkMemory()
                if watch { checkForChanges() }
            }
            for w in workers where w.draining && w.inflight.isEmpty {
                w.writeLock.lock()
                w.closeStdin() // the runtime exits on EOF
                w.writeLock.unlock()
            }
            for w in workers {
                switch w.state {
                case let .waiting(at) where at <= now: spawn(w)
                case let .starting(deadline) where deadline <= now:
                    log(PYLON_LOG_ERROR, "fnbun: worker \(w.index) sent no ready frame within \(Int(Self.readyTimeout)) s; killing it")
                    kill(w.pid, SIGKILL)
                    w.state = .stopped // the reader moves it to .waiting
                default: break
                }
            }
            publishReady()
            if expired.isEmpty { continue }
            lock.unlock()
            for (c, ranOn, victim) in expired {
                finish(c.key, PYLON_ERR_BUSY, result: nil, code: "FUNCTION_TIMEOUT",
                       message: !ranOn
                           ? "no Bun worker was ready within \(callTimeout) s (PYLON_FN_CALL_TIMEOUT)"
                           : "the function ran longer than \(callTimeout) s (PYLON_FN_CALL_TIMEOUT); its worker was restarted")
                if let victim, victim > 0 { kill(victim, SIGKILL) }
            }
            lock.lock()
        }
        supervising = false
        lock.broadcast()
        lock.unlock()
    }

    /// Kills children over the memory limit. Pool lock held.
    func checkMemoryLocked(_ workers: [Worker]) {
        guard maxRSS > 0 else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        for w in workers where w.pid > 0 && w.killReason == nil {
            switch w.state {
            case .ready, .starting: break
            default: continue
            }
            guard let statm = try? String(contentsOfFile: "/proc/\(w.pid)/statm", encoding: .utf8) else { continue }
            let fields = statm.split(separator: " ")
            guard fields.count > 1, let pages = Int(fields[1]), pages * page > maxRSS else { continue }
            let mb = (pages * page) >> 20
            log(PYLON_LOG_ERROR, "fnbun: worker \(w.index) (pid \(w.pid)) uses \(mb) MiB, over the limit of \(maxRSS >> 20) MiB (PYLON_FN_MAX_RSS_MB); killing it")
            w.killReason = ("WORKER_MEMORY_LIMIT", "the Bun worker running this call used \(mb) MiB, over the limit of \(maxRSS >> 20) MiB (PYLON_FN_MAX_RSS_MB); it was restarted")
            w.state = .stopped
            kill(w.pid, SIGKILL)
        }
    }

    /// The functions folder's files with size and modification time, for change detection.
    func folderSignature() -> [String] {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: functionsDir)) ?? []).sorted()
        return names.map { name in
            var st = stat()
            let ok = stat("\(functionsDir)/\(name)", &st) == 0
            return ok ? "\(name):\(st.st_size):\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)" : name
        }
    }
}
