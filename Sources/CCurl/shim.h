#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>

/* curl_easy_setopt and curl_easy_getinfo are variadic, which Swift cannot call: the request
 * shapes the plugins need (StoreD1: a JSON POST; AuthOAuth: form POSTs and GETs) as
 * fixed-arity functions. */

/* A growable response body. OWNER: the caller; free `data` with free(). */
typedef struct pylon_curl_body {
    char *data;
    size_t len;
    size_t cap;
    size_t limit; /* stop (and fail the transfer) beyond this many bytes */
} pylon_curl_body;

static size_t pylon_curl_collect(char *ptr, size_t size, size_t nmemb, void *userdata) {
    pylon_curl_body *b = (pylon_curl_body *)userdata;
    size_t n = size * nmemb;
    if (b->len + n > b->limit) return 0; /* makes curl fail with CURLE_WRITE_ERROR */
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = (char *)realloc(b->data, cap);
        if (p == NULL) return 0;
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, ptr, n);
    b->len += n;
    b->data[b->len] = '\0';
    return n;
}

/* Options every request here shares: the URL, headers, timeouts, where the body goes,
 * errors, no redirects, http(s) only, TLS verification always on (`ca_file`: a PEM bundle
 * to verify the server with instead of the system's, or NULL). */
static inline void pylon_curl_common(CURL *h, const char *url, struct curl_slist *headers, long timeout_ms,
                                     long connect_timeout_ms, const char *ca_file, pylon_curl_body *out, char *errbuf) {
    errbuf[0] = '\0';
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, connect_timeout_ms);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, pylon_curl_collect);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, (void *)out);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    if (ca_file != NULL) curl_easy_setopt(h, CURLOPT_CAINFO, ca_file);
}

static inline CURLcode pylon_curl_perform(CURL *h, long *status) {
    CURLcode rc = curl_easy_perform(h);
    *status = 0;
    if (rc == CURLE_OK) curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
    return rc;
}

/* POSTs `body` to `url` on the reusable handle `h`. Returns the curl result; on CURLE_OK
 * `*status` is the HTTP status and `out` the response body. `errbuf` must hold
 * CURL_ERROR_SIZE bytes. `headers` is a list built with curl_slist_append (OWNER: caller). */
static inline CURLcode pylon_curl_post(CURL *h, const char *url, struct curl_slist *headers, const char *body,
                                       size_t body_len, long timeout_ms, long connect_timeout_ms,
                                       const char *ca_file, pylon_curl_body *out, long *status, char *errbuf) {
    pylon_curl_common(h, url, headers, timeout_ms, connect_timeout_ms, ca_file, out, errbuf);
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    return pylon_curl_perform(h, status);
}

/* One HTTP request on the reusable handle `h`: a GET when `body` is NULL, else a POST of
 * `body_len` bytes; otherwise as `pylon_curl_post`. */
static inline CURLcode pylon_curl_request(CURL *h, const char *url, struct curl_slist *headers, const char *body,
                                          size_t body_len, long timeout_ms, long connect_timeout_ms,
                                          const char *ca_file, pylon_curl_body *out, long *status, char *errbuf) {
    if (body != NULL)
        return pylon_curl_post(h, url, headers, body, body_len, timeout_ms, connect_timeout_ms, ca_file, out, status, errbuf);
    pylon_curl_common(h, url, headers, timeout_ms, connect_timeout_ms, ca_file, out, errbuf);
    curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    return pylon_curl_perform(h, status);
}

/* libcurl's global setup, once per plugin: call from `create` ([one-thread-at-a-time]),
 * never from a library constructor. 1 when it is done. */
static inline int pylon_curl_global_once(void) {
    static int done = 0;
    if (done) return 1;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return 0;
    done = 1;
    return 1;
}

/* A message being uploaded. OWNER: the caller; `data` is borrowed for the transfer. */
typedef struct pylon_curl_upload {
    const char *data;
    size_t len;
    size_t pos;
} pylon_curl_upload;

static size_t pylon_curl_feed(char *buf, size_t size, size_t nitems, void *userdata) {
    pylon_curl_upload *u = (pylon_curl_upload *)userdata;
    size_t room = size * nitems, left = u->len - u->pos;
    size_t n = left < room ? left : room;
    memcpy(buf, u->data + u->pos, n);
    u->pos += n;
    return n;
}

/* Sends one RFC 5322 `message` (CRLF lines; libcurl dot-stuffs it) from `mail_from` to
 * `rcpt` over SMTP on a fresh handle `h` (the caller cleans it up). `url` is smtp:// or
 * smtps://, credentials in it as curl reads them. `use_ssl` is a CURLUSESSL_* level:
 * CURLUSESSL_ALL makes STARTTLS mandatory on smtp://. TLS peer and host verification are
 * always on; `ca_file` may name a PEM bundle to trust instead of the system's. `errbuf`
 * must hold CURL_ERROR_SIZE bytes. */
static inline CURLcode pylon_curl_smtp_send(CURL *h, const char *url, const char *mail_from, const char *rcpt,
                                            const char *message, size_t message_len, long use_ssl, long timeout_ms,
                                            long connect_timeout_ms, const char *ca_file, char *errbuf) {
    errbuf[0] = '\0';
    struct curl_slist *rcpts = curl_slist_append(NULL, rcpt);
    if (rcpts == NULL) return CURLE_OUT_OF_MEMORY;
    pylon_curl_upload upload = {message, message_len, 0};
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
    curl_easy_setopt(h, CURLOPT_MAIL_FROM, mail_from);
    curl_easy_setopt(h, CURLOPT_MAIL_RCPT, rcpts);
    curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(h, CURLOPT_READFUNCTION, pylon_curl_feed);
    curl_easy_setopt(h, CURLOPT_READDATA, (void *)&upload);
    curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)message_len);
    curl_easy_setopt(h, CURLOPT_USE_SSL, use_ssl);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, connect_timeout_ms);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    if (ca_file != NULL) curl_easy_setopt(h, CURLOPT_CAINFO, ca_file);
    CURLcode rc = curl_easy_perform(h);
    curl_slist_free_all(rcpts);
    return rc;
}
