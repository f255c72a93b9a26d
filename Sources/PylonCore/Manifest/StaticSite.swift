import PylonJSON

/// A folder of static files the host serves at `/` beside the API — an app's web page
/// (ours; Pylon's API server serves no files). From the manifest's `static` key, a folder
/// name (`"static": "web"`) or `{"dir": "web", "spa": true}`, relative to the manifest;
/// `PYLON_STATIC_DIR` or `serve --static DIR` override it. With `spa` (the default), a
/// page request (`Accept: text/html`) for a path that names no file gets `index.html`, so
/// a single-page app's client-side routes load on a refresh.
public struct StaticSite: Sendable, Equatable {
    public var dir: String
    public var spa: Bool

    public init(dir: String, spa: Bool = true) {
        self.dir = dir
        self.spa = spa
    }
}

extension ManifestDecoder {
    /// The `static` key's shapes: a string or `{"dir", "spa"?}`.
    func staticSite(_ r: JSONValue) throws(ManifestError) -> StaticSite? {
        guard let v = r["static"], !v.isNull else { return nil }
        if let dir = v.stringValue {
            guard !dir.isEmpty else { throw fail("$.static", "expected a folder name, found an empty string") }
            return StaticSite(dir: dir)
        }
        let o = try obj(v, "$.static")
        let dir = try str(o, "dir", "$.static")
        guard !dir.isEmpty else { throw fail("$.static.dir", "expected a folder name, found an empty string") }
        return StaticSite(dir: dir, spa: try bool(o, "spa", "$.static", default: true))
    }
}
