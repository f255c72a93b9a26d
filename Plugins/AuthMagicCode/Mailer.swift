import CCurl
import Foundation
import PylonCurl
import PylonJSON
import PylonPluginABI
import PylonPluginKit

/// Delivers mail on threads of its own (`send` is [bounded]: the host calls it from an
/// event loop), through the configured transport: the host's log, SMTP (libcurl) or one of
/// Pylon's HTTP email APIs (libcurl). A fresh libcurl handle per message: mail is rare
/// next to requests, and no handle state leaks between transports or messages.
final class Mailer: @unchecked Sendable {
    /// One message and its completion (the host's callback and context, called once).
    struct Job {
        let to: String
        let subject: String
        let body: String
        let done: pylon_code_sent_fn
        let doneCtx: UnsafeMutableRawPointer?
    }

    /// Why a delivery failed (never the secret or a credential).
    struct Failure: Error {
        let status: pylon_status
        let code: String
        let message: String
    }

    let config: CodeConfig
    private let log: HostLog
    private let cond = NSCondition()
    private var queue: [Job] = []
    private var stopping = false
    private var threadsLeft = 0

    init(config: CodeConfig, log: HostLog) {
        self.config = config
        self.log = log
        threadsLeft = config.sendThreads
        for i in 0..<config.sendThreads {
            let t = Thread { [self] in work() }
            t.name = "pylon-mail-\(i)"
            t.start()
        }
    }

    /// Queues `job`; false when `queueLimit` messages already wait (the caller reports it).
    func enqueue(_ job: Job) -> Bool {
        cond.lock()
        defer { cond.unlock() }
        guard !stopping, queue.count < config.queueLimit else { return false }
        queue.append(job)
        cond.signal()
        return true
    }

    /// Stops the threads: messages still waiting complete with PYLON_ERR_ABORTED; returns
    /// once the messages being sent are done (each is bounded by the send timeout).
    func stop() {
        cond.lock()
        stopping = true
        let dropped = queue
        queue.removeAll()
        cond.broadcast()
        cond.unlock()
        for job in dropped { complete(job, Failure(status: PYLON_ERR_ABORTED, code: "EMAIL_ABORTED", message: "the host stopped before the email was sent")) }
        cond.lock()
        while threadsLeft > 0 { cond.wait() }
        cond.unlock()
    }

    private func work() {
        while true {
            cond.lock()
            while queue.isEmpty && !stopping { cond.wait() }
            if queue.isEmpty {
                threadsLeft -= 1
                cond.broadcast()
                cond.unlock()
                return
            }
            let job = queue.removeFirst()
            cond.unlock()
            complete(job, deliver(job))
        }
    }

    private func complete(_ job: Job, _ failure: Failure?) {
        guard let failure else {
            job.done(job.doneCtx, PYLON_OK, nil)
            return
        }
        log(PYLON_LOG_WARN, "auth.code: email to \(job.to) not sent: \(failure.message)")
        withError(failure.status, failure.code, failure.message) { job.done(job.doneCtx, failure.status, $0) }
    }

    /// Sends one message; nil when the transport accepted it.
    func deliver(_ job: Job) -> Failure? {
        switch config.transport {
        case .console:
            log(PYLON_LOG_INFO, "auth.code email (console transport) to \(job.to)\nSubject: \(job.subject)\n\n\(job.body)")
            return nil
        case let .smtp(url, useSSL, _):
            return smtp(url: url, useSSL: useSSL, job)
        case let .http(provider, endpoint, apiKey):
            return http(provider: provider, endpoint: endpoint, apiKey: apiKey, job)
        }
    }

    private func smtp(url: String, useSSL: Int, _ job: Job) -> Failure? {
        guard let h = curl_easy_init() else { return Failure(status: PYLON_ERR_NO_MEMORY, code: "EMAIL_SEND_FAILED", message: "libcurl could not make a handle") }
        defer { curl_easy_cleanup(h) }
        let message = EmailText.message(from: config.from, to: job.to, subject: job.subject, body: job.body)
        var errbuf = [CChar](repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
        let from = "<\(EmailText.bareAddress(config.from))>", rcpt = "<\(job.to)>"
        let rc = errbuf.withUnsafeMutableBufferPointer { e in
            withOptionalCString(config.caFile) { ca in
                pylon_curl_smtp_send(h, url, from, rcpt, message, message.utf8.count, useSSL, config.timeoutMs,
                                     config.connectTimeoutMs, ca, e.baseAddress)
            }
        }
        return rc == CURLE_OK ? nil : curlFailure(rc, errbuf, "SMTP")
    }

    private func http(provider: String, endpoint: String, apiKey: String?, _ job: Job) -> Failure? {
        let headers = ["Content-Type: application/json", "Accept: application/json"] + (apiKey.map { ["Authorization: Bearer \($0)"] } ?? [])
        let body = JSONWriter.encode(Self.httpBody(provider: provider, from: config.from, to: job.to, subject: job.subject, text: job.body))
        let curl = CurlHTTP(timeoutMs: config.timeoutMs, connectTimeoutMs: config.connectTimeoutMs, caFile: config.caFile, maxResponseBytes: 65_536)
        switch curl.perform(endpoint, headers: headers, body: body) {
        case let .failure(f):
            return Failure(status: PYLON_ERR_IO, code: f.timedOut ? "EMAIL_TIMEOUT" : "EMAIL_SEND_FAILED", message: "\(provider): \(f.message)")
        case let .success(reply) where !(200..<300).contains(reply.status):
            return Failure(status: PYLON_ERR_IO, code: "EMAIL_SEND_FAILED", message: "\(provider) answered HTTP \(reply.status)")
        case .success:
            return nil
        }
    }

    /// Pylon's request bodies (pylon-aux.md §1.6).
    static func httpBody(provider: String, from: String, to: String, subject: String, text: String) -> JSONValue {
        let sender = EmailText.bareAddress(from)
        switch provider {
        case "sendgrid":
            return .object([("personalizations", .array([.object([("to", .array([.object([("email", .string(to))])]))])])),
                            ("from", .object([("email", .string(sender))])), ("subject", .string(subject)),
                            ("content", .array([.object([("type", "text/plain"), ("value", .string(text))])]))])
        case "webhook":
            return .object([("to", .string(to)), ("from", .string(from)), ("subject", .string(subject)), ("body", .string(text))])
        default:  // resend, stack0
            return .object([("from", .string(from)), ("to", .array([.string(to)])), ("subject", .string(subject)), ("text", .string(text))])
        }
    }

    private func curlFailure(_ rc: CURLcode, _ errbuf: [CChar], _ what: String) -> Failure {
        let text = errbuf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
        let detail = text.isEmpty ? String(cString: curl_easy_strerror(rc)) : String(decoding: text, as: UTF8.self)
        let code = rc == CURLE_OPERATION_TIMEDOUT ? "EMAIL_TIMEOUT" : "EMAIL_SEND_FAILED"
        return Failure(status: PYLON_ERR_IO, code: code, message: "\(what): \(detail) (curl \(rc.rawValue))")
    }
}

private func withOptionalCString<R>(_ s: String?, _ body: (UnsafePointer<CChar>?) -> R) -> R {
    guard let s else { return body(nil) }
    return s.withCString { body($0) }
}
