import PylonCore

/// Keeps `auth.email` current. Sessions carry their user's verified address in the session
/// cache, and streams read with the address they opened with; a committed change of a user
/// row's `email` or `emailVerified` — an email change, a verification, an admin's edit, a
/// function's write, on any host — must reach both, or a changed address would keep
/// granting rows.
///
/// It does through the change feed every host already follows (`ChangeHub.observe`): the
/// event carries the row before and after, so no extra write or read is needed. On the
/// host that wrote, this runs before the write is answered; other hosts see it when their
/// change tailer reads the entry (within its poll, woken by the store's notification).
/// The user's sessions leave the session cache (the next request reads the row again) and
/// their streams that read with another address end; clients reconnect with their cursor.
/// A change made outside the host (SQL by hand) writes no change-log entry: HTTP requests
/// see it when the cached session expires (30 s), streams when they reconnect.
package struct EmailChanges: Sendable {
    let userEntity: String
    let verifiedEmail: VerifiedEmail
    let sessions: SessionStore
    let hub: ChangeHub

    package init(manifest: Manifest, sessions: SessionStore, hub: ChangeHub) {
        userEntity = manifest.auth.userEntity
        verifiedEmail = sessions.verifiedEmail
        self.sessions = sessions
        self.hub = hub
    }

    /// Looks at a committed batch; cheap for batches that touch no user's address. A new
    /// user row is skipped: no session of a user who did not exist holds an address.
    package func notice(_ events: [ChangeEvent]) {
        for e in events where e.entity == userEntity && e.kind != .insert {
            let now = verifiedEmail.value(row: e.data)
            guard verifiedEmail.value(row: e.before) != now else { continue }
            sessions.forget(userID: e.rowID)
            hub.userEmailChanged(e.rowID, to: now)
        }
    }
}
