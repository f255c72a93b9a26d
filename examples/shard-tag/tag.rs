//! shard-tag: an example `pylon.shard.sim/1` plugin in Rust, with the standard library only
//! (no crates; `rustc` alone builds it, Debian's 1.63 too). The C declarations it needs from
//! `pylon_plugin.h` are written out below as `#[repr(C)]` types: the ABI is plain C, so any
//! language that can lay out a C struct and export a C function can serve a sim.
//!
//! The game is tag. Players join; the first one is "it". Whoever is "it" tags another player,
//! who becomes "it"; each tag scores one for the tagger, and every tick spent "it" counts.
//!
//! Shard config (`POST /api/shards {"sim": "tag", "config": {...}}`), every key optional:
//!   {"max_tags": 0, "max_players": 64, "pad": 0}
//!   max_tags > 0 ends the game after that many tags; pad adds that many bytes (0..65536) of
//!   filler to every snapshot (for load tests that want snapshots of a given size).
//! Inputs (anything else is rejected with INPUT_REJECTED and changes nothing):
//!   {"join": true}      join the game (once)
//!   {"tag": "<id>"}     tag that player (only the player who is "it", not itself)
//! Snapshot for a subscriber:
//!   {"tick": n, "it": id|null, "tags": n, "you": {"id","score","it_ticks"}|null,
//!    "players": [id, ...], "pad"?: "..."}
//! Save and restore: the whole state as text, so its shards can persist.
//!
//! Threads: the host calls one state from one thread at a time and different states at once,
//! so everything lives in the state. Nothing unwinds into the host: every entry point catches
//! panics and turns them into an error status.

use std::ffi::c_void;
use std::fmt::Write;
use std::os::raw::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};

// ---- the C declarations (pylon_plugin.h, ABI 2.5) ---------------------------------------

type Status = i32;
const PYLON_OK: Status = 0;
const PYLON_ERR_GENERIC: Status = 1;
const PYLON_ERR_INVALID_ARGUMENT: Status = 2;
const PYLON_ERR_CORRUPT: Status = 11;
const PYLON_ABI_MAJOR: u32 = 2;
/// The minor these declarations were written from.
const PYLON_ABI_MINOR: u32 = 5;
const PYLON_SIM_SNAPSHOT_MAX: usize = 4_194_304;

#[repr(C)]
struct PylonStr {
    ptr: *const c_char,
    len: usize,
}

#[repr(C)]
struct PylonError {
    struct_size: u32,
    status: Status,
    code: PylonStr,
    message: PylonStr,
}

#[repr(C)]
struct PylonErrorSink {
    struct_size: u32,
    reserved: u32,
    ctx: *mut c_void,
    set: Option<extern "C" fn(ctx: *mut c_void, err: *const PylonError)>,
}

/// `pylon_value`: only its size matters here (the layout check).
#[repr(C)]
struct PylonValue {
    kind: i32,
    reserved: i32,
    payload: [u64; 2],
}

/// `pylon_host_v1`: only its size matters here.
#[repr(C)]
struct PylonHostV1 {
    struct_size: u32,
    abi_minor: u32,
    host_ctx: *mut c_void,
    functions: [Option<extern "C" fn()>; 7],
}

type BytesFn = Option<extern "C" fn(ctx: *mut c_void, bytes: *const u8, len: usize)>;

#[repr(C)]
struct PylonShardSimV1 {
    struct_size: u32,
    reserved: u32,
    name: *const c_char,
    create: extern "C" fn(*mut c_void, *const c_char, usize, *mut *mut Game, *const PylonErrorSink) -> Status,
    destroy: extern "C" fn(*mut c_void, *mut Game),
    apply_input: extern "C" fn(*mut c_void, *mut Game, *const c_char, usize, *const c_char, usize, i64, *const PylonErrorSink) -> Status,
    tick: extern "C" fn(*mut c_void, *mut Game, u64, i64, *const PylonErrorSink) -> Status,
    snapshot_for: extern "C" fn(*mut c_void, *mut Game, *const c_char, usize, BytesFn, *mut c_void, *const PylonErrorSink) -> Status,
    is_finished: extern "C" fn(*mut c_void, *mut Game) -> i32,
    authorize_subscribe: Option<extern "C" fn()>,
    authorize_input: Option<extern "C" fn()>,
    save: Option<extern "C" fn(*mut c_void, *mut Game, BytesFn, *mut c_void, *const PylonErrorSink) -> Status>,
    restore: Option<extern "C" fn(*mut c_void, *const u8, usize, *mut *mut Game, *const PylonErrorSink) -> Status>,
}

#[repr(C)]
pub struct PylonPluginDescriptor {
    struct_size: u32,
    abi_major: u32,
    abi_minor: u32,
    abi_header_hash: u32,
    sizeof_pointer: u32,
    sizeof_value: u32,
    sizeof_error: u32,
    sizeof_host: u32,
    plugin_id: *const c_char,
    plugin_version: *const c_char,
    description: *const c_char,
    capabilities: *const *const c_char,
    capability_count: u32,
    reserved0: u32,
    create: extern "C" fn(*const PylonHostV1, *const c_char, usize, *mut *mut c_void, *const PylonErrorSink) -> Status,
    destroy: extern "C" fn(*mut c_void),
    get_interface: extern "C" fn(*mut c_void, *const c_char) -> *const c_void,
}

// The tables are constant and only read: sharing them between threads is safe.
unsafe impl Sync for PylonShardSimV1 {}
unsafe impl Sync for PylonPluginDescriptor {}
struct Capabilities([*const c_char; 1]);
unsafe impl Sync for Capabilities {}

/// `PYLON_ABI_HEADER_HASH` of the header the Makefile read (0 when built without it: the
/// host then only notes that the revisions differ).
const ABI_HEADER_HASH: u32 = match option_env!("PYLON_ABI_HEADER_HASH") {
    Some(s) => hex_u32(s),
    None => 0,
};

const fn hex_u32(s: &str) -> u32 {
    let b = s.as_bytes();
    let mut i = if b.len() > 2 && b[0] == b'0' && (b[1] == b'x' || b[1] == b'X') { 2 } else { 0 };
    let mut v: u32 = 0;
    while i < b.len() {
        let c = b[i];
        let d = if c >= b'0' && c <= b'9' {
            c - b'0'
        } else if c >= b'a' && c <= b'f' {
            c - b'a' + 10
        } else if c >= b'A' && c <= b'F' {
            c - b'A' + 10
        } else {
            return 0;
        };
        v = v.wrapping_mul(16).wrapping_add(d as u32);
        i += 1;
    }
    v
}

// ---- errors -------------------------------------------------------------------------------

struct Refusal {
    status: Status,
    code: &'static str,
    message: String,
}

fn refuse(status: Status, code: &'static str, message: &str) -> Refusal {
    Refusal { status, code, message: message.to_string() }
}

fn report(err: *const PylonErrorSink, r: &Refusal) -> Status {
    if let Some(sink) = unsafe { err.as_ref() } {
        if let Some(set) = sink.set {
            let e = PylonError {
                struct_size: std::mem::size_of::<PylonError>() as u32,
                status: r.status,
                code: PylonStr { ptr: r.code.as_ptr() as *const c_char, len: r.code.len() },
                message: PylonStr { ptr: r.message.as_ptr() as *const c_char, len: r.message.len() },
            };
            set(sink.ctx, &e);
        }
    }
    r.status
}

/// Runs `body`, turning its refusal or a panic into an error status (nothing unwinds into C).
fn guarded<F: FnOnce() -> Result<(), Refusal>>(err: *const PylonErrorSink, body: F) -> Status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => PYLON_OK,
        Ok(Err(r)) => report(err, &r),
        Err(_) => report(err, &refuse(PYLON_ERR_GENERIC, "SIM_PANICKED", "the tag sim panicked; this is a bug in the sim")),
    }
}

/// Borrowed (ptr, len) bytes from the host; empty for a NULL pointer.
fn bytes<'a>(ptr: *const u8, len: usize) -> &'a [u8] {
    if ptr.is_null() || len == 0 { &[] } else { unsafe { std::slice::from_raw_parts(ptr, len) } }
}

// ---- a small reader for flat JSON objects -------------------------------------------------

enum Val {
    Str(String),
    Num(f64),
    Bool(bool),
    Null,
}

struct Reader<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Reader<'a> {
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        let hit = self.i < self.b.len() && self.b[self.i] == c;
        self.i += hit as usize;
        hit
    }

    fn string(&mut self) -> Option<String> {
        if !self.eat(b'"') {
            return None;
        }
        let mut out = Vec::new();
        while self.i < self.b.len() {
            let c = self.b[self.i];
            self.i += 1;
            match c {
                b'"' => return String::from_utf8(out).ok(),
                b'\\' => {
                    let e = *self.b.get(self.i)?;
                    self.i += 1;
                    out.push(match e {
                        b'"' => b'"',
                        b'\\' => b'\\',
                        b'/' => b'/',
                        b'n' => b'\n',
                        b't' => b'\t',
                        b'r' => b'\r',
                        _ => return None, // \b, \f and \u are not needed by any input of this game
                    });
                }
                c if c < 0x20 => return None,
                c => out.push(c),
            }
        }
        None
    }

    fn value(&mut self) -> Option<Val> {
        self.ws();
        let rest = &self.b[self.i..];
        for (word, v) in [(&b"true"[..], Val::Bool(true)), (&b"false"[..], Val::Bool(false)), (&b"null"[..], Val::Null)] {
            if rest.starts_with(word) {
                self.i += word.len();
                return Some(v);
            }
        }
        if rest.first() == Some(&b'"') {
            return self.string().map(Val::Str);
        }
        let n = rest.iter().take_while(|c| matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')).count();
        let num: f64 = std::str::from_utf8(&rest[..n]).ok()?.parse().ok()?;
        self.i += n;
        Some(Val::Num(num)).filter(|_| num.is_finite())
    }

    /// A whole document that is one object of scalars.
    fn object(b: &'a [u8]) -> Option<Vec<(String, Val)>> {
        let mut r = Reader { b, i: 0 };
        let mut out = Vec::new();
        if !r.eat(b'{') {
            return None;
        }
        if !r.eat(b'}') {
            loop {
                let k = r.string()?;
                if !r.eat(b':') {
                    return None;
                }
                out.push((k, r.value()?));
                if r.eat(b',') {
                    continue;
                }
                if r.eat(b'}') {
                    break;
                }
                return None;
            }
        }
        r.ws();
        Some(out).filter(|_| r.i == b.len())
    }
}

// ---- the game -----------------------------------------------------------------------------

const MAX_PLAYERS_LIMIT: usize = 1024;
const MAX_PAD: usize = 65_536;

struct Player {
    id: String,
    score: u64,
    it_ticks: u64,
}

pub struct Game {
    tick: u64,
    tags: u64,
    max_tags: u64,
    max_players: usize,
    pad: usize,
    /// The index of the player who is "it".
    it: Option<usize>,
    players: Vec<Player>,
}

fn whole(v: &Val, lo: f64, hi: f64) -> Option<u64> {
    match v {
        Val::Num(n) if *n >= lo && *n <= hi && n.fract() == 0.0 => Some(*n as u64),
        _ => None,
    }
}

impl Game {
    fn from_config(json: &[u8]) -> Result<Game, Refusal> {
        let bad = || refuse(PYLON_ERR_INVALID_ARGUMENT, "INVALID_TAG_CONFIG",
                            "tag config is an object of whole numbers: max_tags (>= 0), max_players (1..1024), pad (0..65536)");
        let mut g = Game { tick: 0, tags: 0, max_tags: 0, max_players: 64, pad: 0, it: None, players: Vec::new() };
        for (k, v) in Reader::object(json).ok_or_else(bad)? {
            match k.as_str() {
                "max_tags" => g.max_tags = whole(&v, 0.0, 1e12).ok_or_else(bad)?,
                "max_players" => g.max_players = whole(&v, 1.0, MAX_PLAYERS_LIMIT as f64).ok_or_else(bad)? as usize,
                "pad" => g.pad = whole(&v, 0.0, MAX_PAD as f64).ok_or_else(bad)? as usize,
                _ => return Err(bad()),
            }
        }
        Ok(g)
    }

    fn find(&self, id: &str) -> Option<usize> {
        self.players.iter().position(|p| p.id == id)
    }

    fn apply(&mut self, sid: &str, input: &[u8]) -> Result<(), Refusal> {
        let rejected = |why: &str| refuse(PYLON_ERR_INVALID_ARGUMENT, "INPUT_REJECTED", why);
        let fields = Reader::object(input).ok_or_else(|| rejected(r#"an input is {"join": true} or {"tag": "<player id>"}"#))?;
        match fields.as_slice() {
            [(k, Val::Bool(true))] if k == "join" => {
                if self.find(sid).is_some() {
                    return Err(rejected("this player has already joined"));
                }
                if self.players.len() >= self.max_players {
                    return Err(rejected("the game is full"));
                }
                self.players.push(Player { id: sid.to_string(), score: 0, it_ticks: 0 });
                if self.it.is_none() {
                    self.it = Some(self.players.len() - 1);
                }
                Ok(())
            }
            [(k, Val::Str(target))] if k == "tag" => {
                let me = self.find(sid).ok_or_else(|| rejected("join before tagging"))?;
                if self.it != Some(me) {
                    return Err(rejected("only the player who is it may tag"));
                }
                let other = self.find(target).ok_or_else(|| rejected("no such player"))?;
                if other == me {
                    return Err(rejected("a player cannot tag itself"));
                }
                self.players[me].score += 1;
                self.it = Some(other);
                self.tags += 1;
                Ok(())
            }
            _ => Err(rejected(r#"an input is {"join": true} or {"tag": "<player id>"}"#)),
        }
    }

    fn snapshot(&self, sid: &str) -> String {
        // Ids are letters, digits and _-.:@ (the host checks subscriber ids): no escaping.
        let mut s = String::with_capacity(128 + self.players.len() * 16 + self.pad);
        let it = self.it.map(|i| format!("\"{}\"", self.players[i].id)).unwrap_or_else(|| "null".to_string());
        let _ = write!(s, "{{\"tick\":{},\"it\":{},\"tags\":{},\"you\":", self.tick, it, self.tags);
        match self.find(sid) {
            Some(i) => {
                let p = &self.players[i];
                let _ = write!(s, "{{\"id\":\"{}\",\"score\":{},\"it_ticks\":{}}}", p.id, p.score, p.it_ticks);
            }
            None => s.push_str("null"),
        }
        s.push_str(",\"players\":[");
        for (n, p) in self.players.iter().enumerate() {
            let _ = write!(s, "{}\"{}\"", if n == 0 { "" } else { "," }, p.id);
        }
        s.push(']');
        if self.pad > 0 {
            s.push_str(",\"pad\":\"");
            s.extend(std::iter::repeat('.').take(self.pad));
            s.push('"');
        }
        s.push('}');
        s
    }

    /// "tag1 tick tags max_tags max_players pad it count" then "id score it_ticks" per player
    /// (`it` is the index of the player who is it, or -1).
    fn save(&self) -> String {
        let it = self.it.map(|i| i as i64).unwrap_or(-1);
        let mut s = format!("tag1 {} {} {} {} {} {} {}\n", self.tick, self.tags, self.max_tags, self.max_players, self.pad, it, self.players.len());
        for p in &self.players {
            let _ = writeln!(s, "{} {} {}", p.id, p.score, p.it_ticks);
        }
        s
    }

    fn restore(saved: &[u8]) -> Option<Game> {
        let text = std::str::from_utf8(saved).ok()?;
        let mut lines = text.split('\n');
        let head: Vec<&str> = lines.next()?.split(' ').collect();
        if head.len() != 8 || head[0] != "tag1" {
            return None;
        }
        let num = |s: &str| s.parse::<u64>().ok();
        let (tick, tags, max_tags) = (num(head[1])?, num(head[2])?, num(head[3])?);
        let (max_players, pad, count) = (num(head[4])? as usize, num(head[5])? as usize, num(head[7])? as usize);
        let it: i64 = head[6].parse().ok()?;
        if max_players == 0 || max_players > MAX_PLAYERS_LIMIT || pad > MAX_PAD || count > max_players || it < -1 || it >= count as i64 {
            return None;
        }
        let mut players = Vec::with_capacity(count);
        for _ in 0..count {
            let f: Vec<&str> = lines.next()?.split(' ').collect();
            let valid_id = !f.is_empty() && !f[0].is_empty() && f[0].len() <= 128
                && f[0].bytes().all(|c| c.is_ascii_alphanumeric() || b"_-.:@".contains(&c));
            if f.len() != 3 || !valid_id {
                return None;
            }
            players.push(Player { id: f[0].to_string(), score: num(f[1])?, it_ticks: num(f[2])? });
        }
        if lines.next() != Some("") || lines.next().is_some() {
            return None;
        }
        let it = if it < 0 { None } else { Some(it as usize) };
        Some(Game { tick, tags, max_tags, max_players, pad, it, players })
    }
}

// ---- the table ----------------------------------------------------------------------------

fn game<'a>(state: *mut Game) -> &'a mut Game {
    unsafe { &mut *state }
}

fn text<'a>(ptr: *const c_char, len: usize) -> &'a str {
    // Subscriber ids are ASCII (the host checks them).
    std::str::from_utf8(bytes(ptr as *const u8, len)).unwrap_or("")
}

fn hand_back(out: BytesFn, ctx: *mut c_void, data: &[u8], what: &str) -> Result<(), Refusal> {
    if data.len() > PYLON_SIM_SNAPSHOT_MAX {
        return Err(refuse(PYLON_ERR_GENERIC, "TOO_LARGE", &format!("the {} is larger than the host takes", what)));
    }
    let out = out.ok_or_else(|| refuse(PYLON_ERR_INVALID_ARGUMENT, "NO_CALLBACK", "the host passed no callback"))?;
    out(ctx, data.as_ptr(), data.len());
    Ok(())
}

extern "C" fn tag_create(_inst: *mut c_void, json: *const c_char, len: usize, out: *mut *mut Game, err: *const PylonErrorSink) -> Status {
    unsafe { *out = std::ptr::null_mut() };
    guarded(err, || {
        let g = Game::from_config(bytes(json as *const u8, len))?;
        unsafe { *out = Box::into_raw(Box::new(g)) };
        Ok(())
    })
}

extern "C" fn tag_destroy(_inst: *mut c_void, state: *mut Game) {
    if !state.is_null() {
        let _ = catch_unwind(AssertUnwindSafe(|| drop(unsafe { Box::from_raw(state) })));
    }
}

extern "C" fn tag_apply_input(_inst: *mut c_void, state: *mut Game, sid: *const c_char, sid_len: usize, input: *const c_char,
                              input_len: usize, _received_at: i64, err: *const PylonErrorSink) -> Status {
    guarded(err, || game(state).apply(text(sid, sid_len), bytes(input as *const u8, input_len)))
}

extern "C" fn tag_tick(_inst: *mut c_void, state: *mut Game, tick: u64, _dt: i64, err: *const PylonErrorSink) -> Status {
    guarded(err, || {
        let g = game(state);
        g.tick = tick;
        if let Some(i) = g.it {
            g.players[i].it_ticks += 1;
        }
        Ok(())
    })
}

extern "C" fn tag_snapshot_for(_inst: *mut c_void, state: *mut Game, sid: *const c_char, sid_len: usize, out: BytesFn,
                               ctx: *mut c_void, err: *const PylonErrorSink) -> Status {
    guarded(err, || hand_back(out, ctx, game(state).snapshot(text(sid, sid_len)).as_bytes(), "snapshot"))
}

extern "C" fn tag_is_finished(_inst: *mut c_void, state: *mut Game) -> i32 {
    let g = game(state);
    (g.max_tags > 0 && g.tags >= g.max_tags) as i32
}

extern "C" fn tag_save(_inst: *mut c_void, state: *mut Game, out: BytesFn, ctx: *mut c_void, err: *const PylonErrorSink) -> Status {
    guarded(err, || hand_back(out, ctx, game(state).save().as_bytes(), "saved state"))
}

extern "C" fn tag_restore(_inst: *mut c_void, saved: *const u8, len: usize, out: *mut *mut Game, err: *const PylonErrorSink) -> Status {
    unsafe { *out = std::ptr::null_mut() };
    guarded(err, || {
        let g = Game::restore(bytes(saved, len))
            .ok_or_else(|| refuse(PYLON_ERR_CORRUPT, "INVALID_SAVED_STATE", "the saved tag state is not one this sim wrote"))?;
        unsafe { *out = Box::into_raw(Box::new(g)) };
        Ok(())
    })
}

static SIM_TABLE: PylonShardSimV1 = PylonShardSimV1 {
    struct_size: std::mem::size_of::<PylonShardSimV1>() as u32,
    reserved: 0,
    name: b"tag\0".as_ptr() as *const c_char,
    create: tag_create,
    destroy: tag_destroy,
    apply_input: tag_apply_input,
    tick: tag_tick,
    snapshot_for: tag_snapshot_for,
    is_finished: tag_is_finished,
    authorize_subscribe: None, // the default: the admin, or the user whose id is the subscriber
    authorize_input: None,     // allowed (the host checks who may act as a subscriber)
    save: Some(tag_save),
    restore: Some(tag_restore),
};

// ---- the plugin ---------------------------------------------------------------------------

/// No per-instance data: the instance is the address of this byte.
static INSTANCE_TAG: u8 = 0;
const CAP_SHARD_SIM: &[u8] = b"pylon.shard.sim/1\0";
static CAPABILITIES: Capabilities = Capabilities([CAP_SHARD_SIM.as_ptr() as *const c_char]);

extern "C" fn plugin_create(_host: *const PylonHostV1, _config: *const c_char, _len: usize, out: *mut *mut c_void,
                            _err: *const PylonErrorSink) -> Status {
    unsafe { *out = &INSTANCE_TAG as *const u8 as *mut c_void };
    PYLON_OK
}

extern "C" fn plugin_destroy(_inst: *mut c_void) {}

extern "C" fn plugin_get_interface(inst: *mut c_void, capability: *const c_char) -> *const c_void {
    if inst.is_null() || capability.is_null() {
        return std::ptr::null();
    }
    let wanted = unsafe { std::ffi::CStr::from_ptr(capability) };
    if wanted.to_bytes_with_nul() == CAP_SHARD_SIM {
        &SIM_TABLE as *const PylonShardSimV1 as *const c_void
    } else {
        std::ptr::null()
    }
}

static DESCRIPTOR: PylonPluginDescriptor = PylonPluginDescriptor {
    struct_size: std::mem::size_of::<PylonPluginDescriptor>() as u32,
    abi_major: PYLON_ABI_MAJOR,
    abi_minor: PYLON_ABI_MINOR,
    abi_header_hash: ABI_HEADER_HASH,
    sizeof_pointer: std::mem::size_of::<*const c_void>() as u32,
    sizeof_value: std::mem::size_of::<PylonValue>() as u32,
    sizeof_error: std::mem::size_of::<PylonError>() as u32,
    sizeof_host: std::mem::size_of::<PylonHostV1>() as u32,
    plugin_id: b"pylon.example.shard_tag\0".as_ptr() as *const c_char,
    plugin_version: b"0.1.0\0".as_ptr() as *const c_char,
    description: b"example shard sim in Rust (std only): a game of tag (examples/shard-tag)\0".as_ptr() as *const c_char,
    capabilities: &CAPABILITIES.0 as *const [*const c_char; 1] as *const *const c_char,
    capability_count: 1,
    reserved0: 0,
    create: plugin_create,
    destroy: plugin_destroy,
    get_interface: plugin_get_interface,
};

/// The one exported symbol: cheap, side-effect free, callable more than once.
#[no_mangle]
pub extern "C" fn pylon_plugin_entry() -> *const PylonPluginDescriptor {
    &DESCRIPTOR
}
