import Foundation
import HTTPTypes
import Hummingbird
import PylonCore
import PylonJSON

extension RouteContext {
    func addSystemRoutes(_ router: Router<PylonRequestContext>) {
        router.get("/health") { _, _ in
            HTTPSupport.json(.object([
                ("status", "ok"), ("version", .string(PylonVersion.string)),
                ("uptime_secs", .int(Int64(Date().timeIntervalSince(startedAt)))),
            ]))
        }
        router.get("/api/manifest") { req, _ in
            let full = ["1", "true"].contains(req.uri.queryParameters.get("full").map { String($0) } ?? "")
            if full { try await requireAdmin(req, "the full manifest") }
            return HTTPSupport.json(ManifestJSON.encode(data.manifest, redactPolicies: !full))
        }
        // No auth, as in Pylon: built once, since the manifest and the routes are fixed at start.
        let openAPI = JSONWriter.encode(OpenAPIDocument.build(.init(
            manifest: data.manifest, cookieName: config.sessionCookie.name, dev: config.dev,
            functions: functions != nil, cache: cache != nil, oauth: oauth != nil, files: files != nil, unavailable: stubs,
            codes: codes != nil, shards: shards != nil)))
        router.get("/api/openapi.json") { _, _ in HTTPSupport.bytes(openAPI) }
        // Admin-only outside --dev, as in Pylon: the figures describe every user's traffic.
        router.get("/metrics") { req, _ in
            if !config.dev { try await requireAdmin(req, "/metrics") }
            let text = metrics.prometheusText()
            guard Self.wantsPrometheusText(req.headers[values: .accept]) else { return HTTPSupport.json(MetricsJSON.encode(text)) }
            var body = HTTPSupport.allocator.buffer(capacity: text.count)
            body.writeBytes(text)
            return Response(status: .ok, headers: Self.prometheusHeaders, body: .init(byteBuffer: body))
        }
        // Capabilities with no plugin: their routes answer 501 naming the capability.
        for cap in stubs {
            for prefix in cap.routePrefixes {
                for path in [prefix, prefix + "/**"] {
                    for method in [HTTPRequest.Method.get, .post, .patch, .delete, .put] {
                        router.on(RouterPath(path), method: method) { _, _ -> Response in
                            throw HostError(status: 501, code: "CAPABILITY_UNAVAILABLE",
                                            message: "\(cap.id) is not configured: no plugin provides it. Put \(cap.providerHint) in the plugins folder (or select it under \"plugins\".\"\(cap.key)\" in the manifest) and restart.")
                        }
                    }
                }
            }
        }
    }
}

extension RouteContext {
    /// Whether `GET /metrics` answers in the Prometheus text format: when the client asks
    /// for it as Prometheus does (`text/plain` or `application/openmetrics-text` anywhere in
    /// Accept; the answer is format 0.0.4 either way, which Prometheus reads by its
    /// Content-Type), as Pylon decides. JSON otherwise.
    static func wantsPrometheusText(_ accept: [String]) -> Bool {
        accept.contains { a in
            let v = a.lowercased()
            return v.contains("text/plain") || v.contains("application/openmetrics-text")
        }
    }

    static let prometheusHeaders: HTTPFields = [.contentType: "text/plain; version=0.0.4; charset=utf-8"]
}
