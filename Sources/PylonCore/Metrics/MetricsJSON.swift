import Foundation
import PylonJSON

/// `GET /metrics` as JSON (when the caller does not ask for the Prometheus text): Pylon's
/// shape — `uptime_secs`, `requests` `{total, ok, error}`, `methods` — plus every family of
/// the registry by its JSON name (without `pylon_`): `counters` (summed over labels; a
/// counter still at 0 is left out, as before anything counted it), `gauges`, `histograms`
/// (`{count, sum}`), and `routes` (`"METHOD template"` → requests per status class).
/// Read back from the registry's own text, so both formats always say the same.
package enum MetricsJSON {
    struct Sample {
        var name: String
        var labels: [(String, String)]
        var value: Double

        func label(_ key: String) -> String? { labels.first { $0.0 == key }?.1 }
    }

    struct Family {
        var name: String
        var type: String
        var samples: [Sample] = []
    }

    package static func encode(_ text: [UInt8]) -> JSONValue {
        let families = parse(text)
        var counters: [(String, JSONValue)] = []
        var gauges: [(String, JSONValue)] = []
        var histograms: [(String, JSONValue)] = []
        var uptime = 0.0
        var requests: [Sample] = []
        for f in families.sorted(by: { $0.name < $1.name }) {
            let name = f.name.hasPrefix(Metrics.prefix) ? String(f.name.dropFirst(Metrics.prefix.count)) : f.name
            switch f.type {
            case "counter":
                let total = f.samples.reduce(0) { $0 + $1.value }
                if total > 0 { counters.append((name, number(total))) }
                if name == "http_requests_total" { requests = f.samples }
            case "gauge":
                let value = f.samples.reduce(0) { $0 + $1.value }
                gauges.append((name, .double(value)))
                if name == "uptime_seconds" { uptime = value }
            case "histogram":
                let count = f.samples.filter { $0.name.hasSuffix("_count") }.reduce(0) { $0 + $1.value }
                let sum = f.samples.filter { $0.name.hasSuffix("_sum") }.reduce(0) { $0 + $1.value }
                histograms.append((name, .object([("count", number(count)), ("sum", .double(sum))])))
            default:
                continue
            }
        }
        return .object([
            ("uptime_secs", number(uptime.rounded(.down))),
            ("requests", requestTotals(requests)),
            ("methods", methods(requests)),
            ("routes", routes(requests)),
            ("counters", .object(counters)),
            ("gauges", .object(gauges)),
            ("histograms", .object(histograms)),
        ])
    }

    /// Pylon's `{total, ok, error}`: ok is 1xx–3xx, error 4xx and 5xx.
    private static func requestTotals(_ samples: [Sample]) -> JSONValue {
        var ok = 0.0, error = 0.0
        for s in samples {
            if s.label("status").map({ $0.hasPrefix("4") || $0.hasPrefix("5") }) == true { error += s.value } else { ok += s.value }
        }
        return .object([("total", number(ok + error)), ("ok", number(ok)), ("error", number(error))])
    }

    /// Requests per method; Pylon's four always, others once seen.
    private static func methods(_ samples: [Sample]) -> JSONValue {
        var byMethod: [(String, Double)] = ["GET", "POST", "PATCH", "DELETE"].map { ($0, 0) }
        for s in samples {
            let m = s.label("method") ?? "other"
            if let i = byMethod.firstIndex(where: { $0.0 == m }) { byMethod[i].1 += s.value } else if s.value > 0 { byMethod.append((m, s.value)) }
        }
        return .object(byMethod.map { ($0.0, number($0.1)) })
    }

    private static func routes(_ samples: [Sample]) -> JSONValue {
        var byRoute: [String: [(String, JSONValue)]] = [:]
        for s in samples where s.value > 0 {
            let key = "\(s.label("method") ?? "other") \(s.label("route") ?? Metrics.unmatchedRoute)"
            byRoute[key, default: []].append((s.label("status") ?? "?", number(s.value)))
        }
        return .object(byRoute.sorted { $0.key < $1.key }.map { ($0.key, .object($0.value.sorted { $0.0 < $1.0 })) })
    }

    /// A count as a JSON integer; a value past Int64 (a plugin's counter can wrap) as a double.
    static func number(_ v: Double) -> JSONValue {
        if let i = Int64(exactly: v.rounded(.towardZero)), abs(v) < 9e18 { return .int(i) }
        return .double(v)
    }

    /// The families of a text exposition (format 0.0.4) as the registry writes it: a
    /// `# TYPE` line, then that family's samples.
    static func parse(_ text: [UInt8]) -> [Family] {
        var families: [Family] = []
        for line in text.split(separator: UInt8(ascii: "\n")) {
            let s = String(decoding: line, as: UTF8.self)
            if s.hasPrefix("# TYPE ") {
                let parts = s.split(separator: " ")
                if parts.count == 4 { families.append(Family(name: String(parts[2]), type: String(parts[3]))) }
            } else if !s.hasPrefix("#"), let sample = sample(s), !families.isEmpty {
                families[families.count - 1].samples.append(sample)
            }
        }
        return families
    }

    /// `name{k="v",...} value` or `name value`; label values unescaped (`\\`, `\"`, `\n`).
    static func sample(_ line: String) -> Sample? {
        var chars = Substring(line)
        guard let nameEnd = chars.firstIndex(where: { $0 == "{" || $0 == " " }) else { return nil }
        let name = String(chars[..<nameEnd])
        chars = chars[nameEnd...]
        var labels: [(String, String)] = []
        if chars.first == "{" {
            chars = chars.dropFirst()
            while let eq = chars.firstIndex(of: "="), chars.first != "}" {
                let key = String(chars[..<eq]).trimmingLeadingComma()
                chars = chars[chars.index(after: eq)...]
                guard chars.first == "\"" else { return nil }
                chars = chars.dropFirst()
                var value = ""
                var escaped = false
                while let c = chars.first {
                    chars = chars.dropFirst()
                    if escaped {
                        value.append(c == "n" ? "\n" : c)
                        escaped = false
                    } else if c == "\\" {
                        escaped = true
                    } else if c == "\"" {
                        break
                    } else {
                        value.append(c)
                    }
                }
                labels.append((key, value))
            }
            guard chars.first == "}" else { return nil }
            chars = chars.dropFirst()
        }
        guard let value = Double(chars.trimmingCharacters(in: .whitespaces)) else { return nil }
        return Sample(name: name, labels: labels, value: value)
    }
}

private extension String {
    func trimmingLeadingComma() -> String { hasPrefix(",") ? String(dropFirst()) : self }
}
