/** Random base-36 characters from the platform's CSPRNG. */
function random(n: number): string {
  const bytes = crypto.getRandomValues(new Uint8Array(n));
  return Array.from(bytes, (b) => (b % 36).toString(36)).join("");
}

/** An optimistic row id the host maps to its own (`id_map`). */
export const pendingId = (): string => `_pending_${Date.now()}_${random(10)}`;

/** An exactly-once operation id. */
export const opId = (): string => `mut_${Date.now()}_${random(12)}`;

/** This client instance's id, sent with pushes. */
export const clientId = (): string => `cl_${random(16)}`;
