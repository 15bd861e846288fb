import type { Db } from '../db/db.js';

/** Client credentials added through the API, bcrypt-hashed. */
export class CredentialRecords {
  constructor(private readonly db: Db) {}

  credentials(): Promise<Array<{ id: string; password_hash: string; created_at: number }>> {
    return this.db.all('SELECT * FROM credentials ORDER BY id');
  }

  async credential(id: string): Promise<string | undefined> {
    return (await this.db.get<{ password_hash: string }>('SELECT password_hash FROM credentials WHERE id = ?', [id]))
      ?.password_hash;
  }

  /** False when the id exists already. */
  async addCredential(id: string, hash: string, now: number): Promise<boolean> {
    return (
      (await this.db.run(
        'INSERT INTO credentials (id, password_hash, created_at) VALUES (?, ?, ?) ON CONFLICT (id) DO NOTHING',
        [id, hash, now],
      )) === 1
    );
  }

  async deleteCredential(id: string): Promise<boolean> {
    return (await this.db.run('DELETE FROM credentials WHERE id = ?', [id])) === 1;
  }
}
