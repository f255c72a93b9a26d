import PylonPluginABI
@testable import PylonStoreD1
import PylonPluginKit
import Testing

@Suite("StoreD1 units: statement kinds, D1 responses, config")
struct D1UnitTests {
    @Test("Statements are classified by their first words, comments and case ignored")
    func statementKinds() {
        #expect(StatementKind.of("SELECT 1") == .read)
        #expect(StatementKind.of("  -- a comment\n  select * from t") == .read)
        #expect(StatementKind.of("/* c */ WITH x AS (SELECT 1) SELECT * FROM x") == .read)
        #expect(StatementKind.of("PRAGMA table_info(t)") == .read)
        #expect(StatementKind.of("INSERT INTO t VALUES (1)") == .write)
        #expect(StatementKind.of("/* c */ update t set a = 1") == .write)
        #expect(StatementKind.of("CREATE TABLE IF NOT EXISTS t (a)") == .write)
        #expect(StatementKind.of("SAVEPOINT pylon_job") == .savepoint("PYLON_JOB"))
        #expect(StatementKind.of("RELEASE pylon_job") == .release("PYLON_JOB"))
        #expect(StatementKind.of("RELEASE SAVEPOINT x") == .release("X"))
        #expect(StatementKind.of("ROLLBACK TO pylon_op") == .rollbackTo("PYLON_OP"))
        #expect(StatementKind.of("ROLLBACK TRANSACTION TO SAVEPOINT y") == .rollbackTo("Y"))
        #expect(StatementKind.of("ROLLBACK") == .transactionControl)
        #expect(StatementKind.of("BEGIN IMMEDIATE") == .transactionControl)
        #expect(StatementKind.of("commit") == .transactionControl)
    }

    static func decode(_ status: Int, _ body: String, expected: Int = 1) -> Result<[D1Wire.StatementResult], StoreFailureBox> {
        D1Wire.decode(status: status, body: Array(body.utf8), expected: expected).mapError { StoreFailureBox(f: $0) }
    }

    struct StoreFailureBox: Error { var f: StoreFailure }

    @Test("A D1 answer becomes rows in column order, or a store error with a stable code")
    func responses() throws {
        let ok = Self.decode(200, #"{"result":[{"results":[{"id":"a","n":2},{"id":"b","n":null}],"success":true,"meta":{"changes":0,"last_row_id":7}}],"success":true,"errors":[],"messages":[]}"#)
        let rows = try ok.get()[0]
        #expect(rows.columns == ["id", "n"])
        #expect(rows.rows == [[.string("a"), .int(2)], [.string("b"), .null]])
        #expect(rows.lastRowID == 7)

        func code(_ r: Result<[D1Wire.StatementResult], StoreFailureBox>) -> (String, Int32)? {
            if case let .failure(e) = r { return (e.f.code, e.f.status) }
            return nil
        }
        #expect(code(Self.decode(403, #"{"success":false,"errors":[{"code":10000,"message":"Authentication error"}]}"#))?.0 == "D1_AUTH")
        #expect(code(Self.decode(404, #"{"success":false,"errors":[{"code":7404,"message":"no db"}]}"#))?.0 == "D1_NOT_FOUND")
        #expect(code(Self.decode(429, ""))?.1 == PYLON_ERR_BUSY)
        #expect(code(Self.decode(502, "<html>bad gateway</html>"))?.0 == "D1_UNAVAILABLE")
        #expect(code(Self.decode(200, "not json"))?.0 == "D1_BAD_RESPONSE")
        #expect(code(Self.decode(200, #"{"result":[],"success":true}"#))?.0 == "D1_BAD_RESPONSE", "one result per statement")
        let unique = code(Self.decode(400, #"{"result":[],"success":false,"errors":[{"code":7500,"message":"UNIQUE constraint failed: User.email: SQLITE_CONSTRAINT"}]}"#))
        #expect(unique?.0 == "UNIQUE_VIOLATION")
        #expect(unique?.1 == PYLON_ERR_CONSTRAINT)
        #expect(code(Self.decode(200, #"{"success":false,"errors":[{"code":7500,"message":"no such table: x: SQLITE_ERROR"}]}"#))?.0 == "SQL_ERROR")
        #expect(code(Self.decode(200, #"{"result":[{"results":[1],"success":true}],"success":true}"#))?.0 == "D1_BAD_RESPONSE", "rows must be objects")
    }

    static func config(_ json: String) -> Result<D1Config, ConfigProblem> { D1Config.parse(Array(json.utf8)) }

    @Test("Config: required ids, one token source, known keys only, http(s) base URL")
    func config() throws {
        let c = try Self.config(#"{"account_id":"acc","database_id":"db-1","api_token":"tok","base_url":"http://127.0.0.1:1/client/v4/","path":"ignored.db"}"#).get()
        #expect(c.queryURL == "http://127.0.0.1:1/client/v4/accounts/acc/d1/database/db-1/query")
        #expect(try Self.config(#"{"account_id":"a","database_id":"d","api_token":"t"}"#).get().baseURL == D1Config.defaultBaseURL)
        func problem(_ json: String) -> String? {
            if case let .failure(p) = Self.config(json) { return p.message }
            return nil
        }
        #expect(problem(#"{"database_id":"d","api_token":"t"}"#)?.contains("account_id") == true)
        #expect(problem(#"{"account_id":"a/../x","database_id":"d","api_token":"t"}"#)?.contains("letters, digits") == true)
        #expect(problem(#"{"account_id":"a","database_id":"d"}"#)?.contains("api_token_env") == true)
        #expect(problem(#"{"account_id":"a","database_id":"d","api_token":"t","api_token_env":"X"}"#)?.contains("not both") == true)
        #expect(problem(#"{"account_id":"a","database_id":"d","api_token":"t","databse":"x"}"#)?.contains("unknown key") == true)
        #expect(problem(#"{"account_id":"a","database_id":"d","api_token":"t","base_url":"ftp://x"}"#)?.contains("https://") == true)
        #expect(problem(#"{"account_id":"a","database_id":"d","api_token_env":"PYLON_SURELY_UNSET_VARIABLE"}"#)?.contains("not set") == true)
        #expect(problem("[]") != nil)
    }
}
