#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>

/* curl_easy_setopt and curl_easy_getinfo are variadic, which Swift cannot call: the one
 * request shape StoreD1 needs (a JSON POST with a bearer token) as a fixed-arity function. */

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

/* POSTs `body` to `url` on the reusable handle `h`. Returns the curl result; on CURLE_OK
 * `*status` is the HTTP status and `out` the response body. `errbuf` must hold
 * CURL_ERROR_SIZE bytes. `headers` is a list built with curl_slist_append (OWNER: caller).
 * `ca_file`: a PEM bundle to verify the server with instead of the system's, or NULL.
 * TLS peer and host verification are always on. */
static inline CURLcode pylon_curl_post(CURL *h, const char *url, struct curl_slist *headers, const char *body,
                                       size_t body_len, long timeout_ms, long connect_timeout_ms,
                                       const char *ca_file, pylon_curl_body *out, long *status, char *errbuf) {
    errbuf[0] = '\0';
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
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
    CURLcode rc = curl_easy_perform(h);
    *status = 0;
    if (rc == CURLE_OK) curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
    return rc;
}
