import { Http } from "./http";

/** A stored file (`_pylon_files` row). */
export interface FileInfo {
  id: string;
  url: string;
  owner: string;
  name: string;
  type: string;
  size: number;
  sha256: string;
  created_at: number | string;
}

/** Files (`/api/files/*`): upload, download, signed links, delete. */
export class Files {
  constructor(private readonly http: Http) {}

  /** Uploads bytes as `name` with media type `type` (the body is sent raw). */
  upload(body: Blob | ArrayBuffer | Uint8Array | string, name: string, type = "application/octet-stream"): Promise<FileInfo> {
    return this.http.request<FileInfo>("/api/files/upload", {
      method: "POST",
      raw: body as BodyInit,
      headers: { "Content-Type": type, "X-Filename": name },
    });
  }

  /** The file's bytes (the caller must be allowed to read it). */
  async download(id: string): Promise<Uint8Array> {
    const res = await this.http.send(`/api/files/${encodeURIComponent(id)}`);
    if (!res.ok) await Http.json(res);
    return new Uint8Array(await res.arrayBuffer());
  }

  /** An absolute URL that works without credentials (e.g. `<img src>`) for `expiresIn` seconds. */
  async signedUrl(id: string, expiresIn?: number): Promise<string> {
    const r = await this.http.request<{ url: string }>(`/api/files/${encodeURIComponent(id)}/sign`, {
      body: expiresIn === undefined ? {} : { expires_in: expiresIn },
    });
    return r.url.startsWith("http") ? r.url : this.http.url(r.url);
  }

  async delete(id: string): Promise<void> {
    await this.http.request(`/api/files/${encodeURIComponent(id)}`, { method: "DELETE" });
  }
}
