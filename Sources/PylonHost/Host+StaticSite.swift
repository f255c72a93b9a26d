import Foundation
import Logging
import PylonCore

extension Host {
    /// The web page to serve, its folder made absolute and canonical (symbolic links
    /// resolved, so the edge can refuse files that lead outside it): `PYLON_STATIC_DIR` or
    /// `--static` (relative to the working directory) over the manifest's `static`
    /// (relative to the manifest). A folder that is missing or not a folder stops the
    /// start, since the app's page would be a 404.
    static func resolveStaticSite(_ config: HostConfig, _ manifest: Manifest, logger: Logger) throws(HostError) -> StaticSite? {
        let fromManifest = config.staticSite == nil
        guard var site = config.staticSite ?? manifest.staticSite else { return nil }
        let base = fromManifest ? URL(fileURLWithPath: config.manifestPath).deletingLastPathComponent()
                                : URL(fileURLWithPath: FileManager.default.currentDirectoryPath, isDirectory: true)
        let path = URL(fileURLWithPath: site.dir, relativeTo: base).standardizedFileURL.path
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue,
              let real = realpath(path, nil) else {
            let origin = fromManifest ? "the manifest's \"static\"" : "PYLON_STATIC_DIR / --static"
            throw HostError(status: 500, code: "STATIC_DIR_INVALID",
                            message: "\(origin) names \(path), which is not a folder; create it or change the setting")
        }
        site.dir = String(cString: real)
        free(real)
        let index = FileManager.default.fileExists(atPath: site.dir + "/index.html")
        logger.info("static site: serving \(site.dir) at /\(site.spa ? " (pages that name no file get index.html)" : "")\(index ? "" : "; it has no index.html")")
        return site
    }
}
