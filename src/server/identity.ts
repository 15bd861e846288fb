import { Refusal } from './refusal.js';

export interface IdentityRules {
  /** auth_multiuse_creds */
  multiuseCreds: boolean;
  /** equate_clientauthid_clientid: a client that sends no id gets its credential's id (see ClientConnection). */
  equateAuthIdClientId: boolean;
}

/** What the registry knows of ids and the credentials that registered them. */
export interface IdentityRecords {
  /** The credential that first registered this client id ('' for none or a row from before ids were bound). */
  ownerOf(clientId: string): Promise<string | undefined>;
  /** Client ids registered under this credential. */
  clientsOf(authId: string): Promise<string[]>;
}

/** Which ids are credentials' own (their auth ids). */
export interface CredentialIds {
  exists(id: string): Promise<boolean>;
}

/**
 * Whether a session logged in as `authId` may be client `clientId`. An id that is a credential's own (its
 * auth id) belongs to that credential alone, even if another took it before: no credential can squat the id
 * of one that has not connected yet. RPort's auth_multiuse_creds; then, beyond RPort, a client id belongs to
 * the credential that first registered it, so one client's credential cannot take another client's id (and
 * its tunnels). The operator frees an id by deleting the client.
 */
export async function checkIdentity(
  clientId: string,
  authId: string,
  rules: IdentityRules,
  records: IdentityRecords,
  credentials: CredentialIds,
): Promise<void> {
  const ownId = clientId === authId;
  if (!ownId && (await credentials.exists(clientId))) {
    throw new Refusal(
      'identity',
      `client id "${clientId}" is the id of the credential "${clientId}", so only that credential may use it, not "${authId}": give this client another id (or log in as "${clientId}")`,
    );
  }
  const owner = ownId ? undefined : await records.ownerOf(clientId);
  if (owner && owner !== authId) {
    throw new Refusal(
      'identity',
      `client id "${clientId}" belongs to the credential "${owner}", not "${authId}": use ${owner}'s credential, or delete client "${clientId}" through the API to free the id`,
    );
  }
  if (!rules.multiuseCreds) {
    const other = (await records.clientsOf(authId)).find((id) => id !== clientId);
    if (other !== undefined) {
      throw new Refusal(
        'identity',
        `credential "${authId}" is already used by client "${other}" ([server] auth_multiuse_creds = false): give this client a credential of its own, or delete client "${other}" through the API`,
      );
    }
  }
}
