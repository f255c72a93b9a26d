import Foundation
import Testing
import PylonCore

/// The cron parser and next-run computation (`CronExpression`), against a table: names,
/// ranges with steps, macros, Vixie's day-of-month OR day-of-week, and daylight saving
/// changes in non-UTC zones (a skipped wall time fires once at the end of the gap; a
/// repeated one fires once unless the hour is a wildcard).
@Suite("Cron expressions: parser and next run (unit)")
struct CronExpressionTests {
    struct Case: Sendable, CustomStringConvertible {
        let expr: String
        let zone: String
        let after: String
        let next: String
        var description: String { "\(expr) in \(zone) after \(after)" }
    }

    static let cases: [Case] = [
        Case(expr: "*/15 * * * *", zone: "UTC", after: "2026-01-01T00:07:00Z", next: "2026-01-01T00:15:00Z"),
        Case(expr: "*/15 * * * *", zone: "UTC", after: "2026-01-01T00:15:00Z", next: "2026-01-01T00:30:00Z"),
        Case(expr: "0 9 * * MON-FRI", zone: "UTC", after: "2026-01-03T10:00:00Z", next: "2026-01-05T09:00:00Z"),
        Case(expr: "0 0 1,15 * MON", zone: "UTC", after: "2026-01-01T00:00:00Z", next: "2026-01-05T00:00:00Z"),
        Case(expr: "0 0 1,15 * MON", zone: "UTC", after: "2026-01-12T00:00:00Z", next: "2026-01-15T00:00:00Z"),
        Case(expr: "0 0 */2 * *", zone: "UTC", after: "2026-01-01T00:00:00Z", next: "2026-01-03T00:00:00Z"),
        Case(expr: "@daily", zone: "UTC", after: "2026-02-28T12:00:00Z", next: "2026-03-01T00:00:00Z"),
        Case(expr: "0 12 29 FEB *", zone: "UTC", after: "2026-03-01T00:00:00Z", next: "2028-02-29T12:00:00Z"),
        Case(expr: "5-20/5 3 * JAN,jul *", zone: "UTC", after: "2026-01-31T03:20:00Z", next: "2026-07-01T03:05:00Z"),
        Case(expr: "@hourly", zone: "UTC", after: "2026-01-01T00:59:59Z", next: "2026-01-01T01:00:00Z"),
        Case(expr: "0 0 * * 7", zone: "UTC", after: "2026-01-01T00:00:00Z", next: "2026-01-04T00:00:00Z"),
        Case(expr: "@yearly", zone: "UTC", after: "2026-06-01T00:00:00Z", next: "2027-01-01T00:00:00Z"),
        Case(expr: "@weekly", zone: "UTC", after: "2026-01-01T00:00:00Z", next: "2026-01-04T00:00:00Z"),
        Case(expr: "59 23 31 12 *", zone: "UTC", after: "2026-12-31T23:59:00Z", next: "2027-12-31T23:59:00Z"),
        // A zone without daylight saving.
        Case(expr: "0 9 * * *", zone: "Asia/Tokyo", after: "2026-01-01T00:00:00Z", next: "2026-01-02T00:00:00Z"),
        // New York, spring forward on 2026-03-08 (02:00 EST → 03:00 EDT).
        Case(expr: "30 2 * * *", zone: "America/New_York", after: "2026-03-07T12:00:00Z", next: "2026-03-08T07:00:00Z"),
        Case(expr: "30 2 * * *", zone: "America/New_York", after: "2026-03-08T07:00:00Z", next: "2026-03-09T06:30:00Z"),
        Case(expr: "0 3 * * *", zone: "America/New_York", after: "2026-03-07T12:00:00Z", next: "2026-03-08T07:00:00Z"),
        Case(expr: "*/30 * * * *", zone: "America/New_York", after: "2026-03-08T06:30:00Z", next: "2026-03-08T07:00:00Z"),
        Case(expr: "*/30 * * * *", zone: "America/New_York", after: "2026-03-08T07:00:00Z", next: "2026-03-08T07:30:00Z"),
        // New York, fall back on 2026-11-01 (02:00 EDT → 01:00 EST): 01:30 happens twice.
        Case(expr: "30 1 * * *", zone: "America/New_York", after: "2026-10-31T12:00:00Z", next: "2026-11-01T05:30:00Z"),
        Case(expr: "30 1 * * *", zone: "America/New_York", after: "2026-11-01T05:30:00Z", next: "2026-11-02T06:30:00Z"),
        Case(expr: "30 * * * *", zone: "America/New_York", after: "2026-11-01T05:30:00Z", next: "2026-11-01T06:30:00Z"),
        Case(expr: "0 9 * * *", zone: "America/New_York", after: "2026-11-01T12:00:00Z", next: "2026-11-01T14:00:00Z"),
        // Berlin, spring forward on 2026-03-29 (02:00 CET → 03:00 CEST), fall back on 2026-10-25.
        Case(expr: "0 2 * * *", zone: "Europe/Berlin", after: "2026-03-28T12:00:00Z", next: "2026-03-29T01:00:00Z"),
        Case(expr: "0 2 * * *", zone: "Europe/Berlin", after: "2026-10-24T12:00:00Z", next: "2026-10-25T00:00:00Z"),
        Case(expr: "0 2 * * *", zone: "Europe/Berlin", after: "2026-10-25T00:00:00Z", next: "2026-10-26T01:00:00Z"),
    ]

    static func date(_ s: String) -> Date { ISO8601DateFormatter().date(from: s)! }

    @Test("next run", arguments: cases)
    func nextRun(_ c: Case) throws {
        let expr = try CronExpression(c.expr)
        let zone = try #require(TimeZone(identifier: c.zone))
        let next = try #require(expr.next(after: Self.date(c.after), in: zone))
        #expect(ISO8601DateFormatter().string(from: next) == c.next, "\(c)")
    }

    @Test("refused expressions say what is wrong", arguments: [
        "60 * * * *", "* * * *", "* * * * * *", "*/0 * * * *", "5-1 * * * *", "@reboot", "* * * FOO *", "1,,2 * * * *",
        "* 24 * * *", "* * 0 * *", "* * * 13 *", "* * * * 8", "a-b * * * *", "1-2-3 * * * *", "*/x * * * *", "",
    ])
    func refused(_ text: String) {
        #expect(throws: CronExpression.ParseError.self) { try CronExpression(text) }
    }

    @Test("an expression that matches no date has no next run; the parser never crashes on noise")
    func neverAndNoise() throws {
        #expect(try CronExpression("0 0 30 2 *").next(after: Self.date("2026-01-01T00:00:00Z"), in: TimeZone(identifier: "UTC")!) == nil)
        var rng = SystemRandomNumberGenerator()
        let alphabet = Array("0123456789*/-,@ abcMONJANxyz\u{0}é")
        for _ in 0..<2000 {
            let s = String((0..<Int.random(in: 0...20, using: &rng)).map { _ in alphabet.randomElement(using: &rng)! })
            if let e = try? CronExpression(s) { _ = e.next(after: Date(), in: TimeZone(identifier: "UTC")!) }
        }
    }
}
