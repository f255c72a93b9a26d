import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import ServiceLifecycle
import PylonCore

/// The host's HTTP listeners as services: the API port (every route, WebSocket upgrades on
/// `/api/sync/ws`) and, unless `compatPorts` is off, Pylon's WebSocket port (+1, every
/// path upgrades) and SSE port (+2). Every listener has the same guards (`HTTPListener`),
/// the same middleware and the same front (`HTTPFront`), and holds at most its share of
/// the open-file budget (`FileBudget.connectionCap`).
package struct EdgeServer {
    let config: HostConfig
    let routes: RouteContext
    let middleware: APIMiddleware<PylonRequestContext>
    let requestGuard: RequestGuard
    /// The listeners beside these that the host runs, whose shares of the open-file budget
    /// come first.
    let others: FileBudget.OtherListeners
    let logger: Logger

    package init(config: HostConfig, routes: RouteContext, middleware: APIMiddleware<PylonRequestContext>,
                 requestGuard: RequestGuard, others: FileBudget.OtherListeners, logger: Logger) {
        self.others = others
        self.config = config
        self.routes = routes
        self.middleware = middleware
        self.requestGuard = requestGuard
        self.logger = logger
    }

    package func services() -> [any Service] {
        let appLogger = quietLogger
        let listeners = FileBudget.listenerCount(config)
        let cap = FileBudget.connectionCap(config.maxConnections, listeners: listeners, others: others)
        if let asked = config.maxConnections, asked > cap {
            logger.warning("PYLON_MAX_CONNECTIONS=\(asked) is more than the open-file limit allows for \(listeners) listener(s); serving at most \(cap) per listener (raise the limit with ulimit -n)")
        }
        logger.info("HTTP: at most \(cap) open connections per listener; timeouts: head \(config.httpHeaderTimeout) s, body \(config.httpBodyTimeout) s, idle \(config.httpIdleTimeout) s (0 = off)")
        // `Expect: 100-continue` is refused above the largest body any route takes (an upload's
        // may be larger than PYLON_MAX_BODY_BYTES); the front holds each request to its own.
        let guards = ListenerGuards(limits: config.connectionLimits, maxBody: max(config.maxBodyBytes, routes.files?.maxBytes ?? 0),
                                    serverName: "pylon-host")
        let router = apiRouter()
        let http1 = answering(router, immediate: { [routes, middleware] in routes.immediateRoute($0, middleware) },
                              streamed: { [routes] in routes.streamedBodyLimit($0) })
        let routes = routes, requestGuard = requestGuard
        let server = HTTPServerBuilder { responder -> any ServerChildChannel in
            HTTPListener(inner: WebSocketUpgradeChannel(responder: responder, http1: http1, routes: routes,
                                                        upgrades: { $0 == "/api/sync/ws" }),
                         guards: guards, upgrades: requestGuard)
        }
        let main = Application(
            router: router,
            server: server,
            configuration: listening(on: config.port, cap: cap),
            onServerRunning: { [logger, config] _ in
                logger.info("pylon-host listening on http://\(config.bindHost):\(config.port)\(config.dev ? " (dev mode)" : "") (\(Allocator.description))")
            },
            logger: appLogger)
        guard config.compatPorts else { return [main] }
        logger.info("Pylon-compatible listeners: WebSocket on port \(config.port + 1), SSE on port \(config.port + 2)")
        return [main, webSocketPort(guards, cap: cap), eventStreamPort(guards, cap: cap)]
    }

    /// The API's routes behind the middleware. HEAD is answered wherever GET is (the GET
    /// handler's head, no body).
    private func apiRouter() -> Router<PylonRequestContext> {
        let router = emptyRouter()
        routes.addSystemRoutes(router)
        routes.addAuthRoutes(router)
        routes.addPasswordRoutes(router)
        if let codes = routes.codes {
            routes.addMagicCodeRoutes(router, codes)
            routes.addEmailChangeRoutes(router, codes)
        }
        routes.addApiKeyRoutes(router)
        routes.addAccountRoutes(router)
        routes.addOrgRoutes(router)
        routes.addDataRoutes(router)
        routes.addSyncRoutes(router)
        routes.addFunctionRoutes(router)
        routes.addAdminDataRoutes(router)
        if let cache = routes.cache { routes.addCacheRoutes(router, cache) }
        if let jobs = routes.jobs, let cron = routes.cron { routes.addJobRoutes(router, jobs, cron) }
        if let workflows = routes.workflows { routes.addWorkflowRoutes(router, workflows) }
        if let oauth = routes.oauth { routes.addOAuthRoutes(router, oauth) }
        if let files = routes.files { routes.addFileRoutes(router, files) }
        if let rooms = routes.rooms { routes.addRoomRoutes(router, rooms) }
        if let shards = routes.shards { routes.addShardRoutes(router, shards) }
        routes.addEventStreamRoute(router, path: "/api/sync/events")
        routes.addStudioRoutes(router)
        if let site = config.staticSite { routes.addStaticSiteRoutes(router, site, logger: quietLogger) }
        return router
    }

    /// Port+1: every path upgrades, as on Pylon's WebSocket port; requests that are not
    /// upgrades get the API's error answers (404 in JSON).
    private func webSocketPort(_ guards: ListenerGuards, cap: Int) -> Application<RouterResponder<PylonRequestContext>> {
        let router = emptyRouter()
        let plain = answering(router)
        let routes = routes, requestGuard = requestGuard
        return Application(
            router: router,
            server: HTTPServerBuilder { responder in
                HTTPListener(inner: WebSocketUpgradeChannel(responder: responder, http1: plain, routes: routes,
                                                            upgrades: { _ in true }),
                             guards: guards, upgrades: requestGuard)
            },
            configuration: listening(on: config.port + 1, cap: cap),
            logger: quietLogger)
    }

    /// Port+2: the change stream as SSE on every path.
    private func eventStreamPort(_ guards: ListenerGuards, cap: Int) -> Application<RouterResponder<PylonRequestContext>> {
        let router = emptyRouter()
        routes.addEventStreamRoute(router, path: "/")
        routes.addEventStreamRoute(router, path: "/**")
        let plain = answering(router)
        return Application(
            router: router,
            server: HTTPServerBuilder { responder in
                HTTPListener(inner: HTTP1Channel(responder: responder, configuration: plain), guards: guards)
            },
            configuration: listening(on: config.port + 2, cap: cap),
            logger: quietLogger)
    }

    private func emptyRouter() -> Router<PylonRequestContext> {
        let router = Router(context: PylonRequestContext.self, options: .autoGenerateHeadEndpoints)
        router.add(middleware: middleware)
        return router
    }

    /// The HTTP handlers of a listener answering with `router`: its `HTTPFront` (the one
    /// path every request takes; see HTTP/HTTPFront.swift) after NIO's codec.
    private func answering(_ router: Router<PylonRequestContext>,
                           immediate: (@Sendable (HTTPRequest) -> HTTPFront.ImmediateHandler?)? = nil,
                           streamed: (@Sendable (HTTPRequest) -> Int?)? = nil) -> HTTP1Channel.Configuration {
        let front = HTTPFront.Shared(responder: router.buildResponder(), logger: quietLogger, serverName: "pylon-host",
                                     maxBody: config.maxBodyBytes, immediate: immediate, streamed: streamed,
                                     writeTimeout: config.writeTimeout,
                                     onWriteTimeout: { [metrics = routes.metrics] in metrics.add("http_write_timeouts_total", 1) })
        return HTTP1Channel.Configuration(additionalChannelHandlers: [HTTPFront(front)], httpDecoderConfiguration: .pylon)
    }

    /// A listener's address and connection cap.
    private func listening(on port: Int, cap: Int) -> ApplicationConfiguration {
        .init(address: .hostname(config.bindHost, port: port), serverName: "pylon-host",
              availableConnectionsDelegate: MaximumAvailableConnections(cap, logger: quietLogger))
    }

    /// Hummingbird's own logging: warnings and worse.
    private var quietLogger: Logger {
        var l = logger
        l.logLevel = .warning
        return l
    }
}
