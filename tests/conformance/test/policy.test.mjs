// Channel policies enforced on top of valid HMAC signatures (issue: security). The backend signs
// everything the client asks for; the broker still refuses what the app's policies forbid.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { MAIN_APP, startBroker } from '../lib/broker.mjs';
import { disconnectAll, newUser, pusherClient, serverSdk, uniq } from '../lib/clients.mjs';
import { TEST_TIMEOUT_MS } from '../lib/wait.mjs';

const T = { timeout: TEST_TIMEOUT_MS };

const POLICIES = [
  { name: 'tenant-isolation', channel: 'tenant.{tenant}.**', tenant: '{tenant}' },
  { name: 'personal', channel: 'user.{id}', user: '{id}', actors: ['user'] },
  {
    name: 'escrow-chat',
    channel: 'tenant.{tenant}.escrow.{id}.chat',
    tenant: '{tenant}',
    resource: 'escrow:{id}',
    allow: [{ participant: true }, { role: 'admin', attributes: { status: 'DISPUTED' } }],
  },
];

/** A presence identity whose signed user_info carries tenant, actor and roles. */
function member(name, tenant, actor, roles = []) {
  const user = newUser(name);
  return { ...user, user_info: { name, tenant_id: tenant, actor, roles } };
}

/** PUT /apps/{id}/resources/{type}/{id}, signed by the server SDK as a backend would. */
async function putResource(broker, kind, id, resource) {
  const sdk = serverSdk(broker);
  const path = `/apps/${broker.app.id}/resources/${kind}/${id}`;
  const body = JSON.stringify(resource);
  const query = sdk.createSignedQueryString({ method: 'PUT', path, body });
  const res = await fetch(`${broker.httpBase}${path}?${query}`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body,
  });
  assert.equal(res.status, 200, await res.text());
}

describe('channel policies', () => {
  let broker;
  before(async () => {
    broker = await startBroker({ apps: [{ ...MAIN_APP, policies: POLICIES }] });
  });
  after(async () => {
    disconnectAll();
    await broker?.stop();
  });

  it('a cross-tenant subscription is refused with subscription_error despite a valid signature', T, async (t) => {
    const room = `presence-tenant.t1.${uniq('room')}`;
    const outsider = await pusherClient(t, broker, { user: member('mallory', 't2', 'user') });
    const error = await outsider.subscribeExpectingError(room);
    assert.equal(error.status, 403);
    assert.match(error.error, /tenant-isolation/);
    const insider = await pusherClient(t, broker, { user: member('alice', 't1', 'user') });
    await insider.subscribe(room);
  });

  it('a worker is refused on a user channel, a user is admitted to their own', T, async (t) => {
    const worker = member('w', 't1', 'worker');
    const workerClient = await pusherClient(t, broker, { user: worker });
    const error = await workerClient.subscribeExpectingError(`presence-user.${worker.user_id}`);
    assert.match(error.error, /personal/);
    const user = member('u', 't1', 'user');
    const userClient = await pusherClient(t, broker, { user });
    await userClient.subscribe(`presence-user.${user.user_id}`);
    const other = await userClient.subscribeExpectingError(`presence-user.${worker.user_id}`);
    assert.equal(other.status, 403);
  });

  it('an admin is refused on an escrow chat until the backend marks it DISPUTED, then admitted', T, async (t) => {
    const escrow = uniq('e');
    const chat = `presence-tenant.t1.escrow.${escrow}.chat`;
    const buyer = member('buyer', 't1', 'user');
    await putResource(broker, 'escrow', escrow, { participants: [buyer.user_id], attributes: { status: 'OPEN' } });
    const buyerClient = await pusherClient(t, broker, { user: buyer });
    await buyerClient.subscribe(chat);

    const admin = member('admin', 't1', 'user', ['admin']);
    const adminClient = await pusherClient(t, broker, { user: admin });
    const refused = await adminClient.subscribeExpectingError(chat);
    assert.match(refused.error, /escrow-chat/);

    await putResource(broker, 'escrow', escrow, { participants: [buyer.user_id], attributes: { status: 'DISPUTED' } });
    const later = await pusherClient(t, broker, { user: admin });
    await later.subscribe(chat);
  });

  it('live re-authorization: the admin leaves when the escrow is resolved, a removed seller too', T, async (t) => {
    const escrow = uniq('e');
    const chat = `presence-tenant.t1.escrow.${escrow}.chat`;
    const buyer = member('buyer', 't1', 'user');
    const seller = member('seller', 't1', 'user');
    const admin = member('admin', 't1', 'user', ['admin']);
    const participants = [buyer.user_id, seller.user_id];
    await putResource(broker, 'escrow', escrow, { tenant: 't1', participants, attributes: { status: 'DISPUTED' } });
    const buyerClient = await pusherClient(t, broker, { user: buyer });
    const sellerClient = await pusherClient(t, broker, { user: seller });
    const adminClient = await pusherClient(t, broker, { user: admin });
    const buyerChat = await buyerClient.subscribe(chat);
    const sellerChat = await sellerClient.subscribe(chat);
    const adminJoined = buyerClient.nextEvent(buyerChat, 'pusher:member_added', {
      filter: (m) => m.id === admin.user_id,
    });
    const adminChat = await adminClient.subscribe(chat);
    await adminJoined;
    assert.equal(buyerChat.members.count, 3);

    // The app's own binding on the channel receives the broker's event.
    const adminRevoked = adminClient.nextEvent(adminChat, 'ringcast:subscription_revoked');
    const adminLeft = buyerClient.nextEvent(buyerChat, 'pusher:member_removed');
    await putResource(broker, 'escrow', escrow, { tenant: 't1', participants, attributes: { status: 'RESOLVED' } });
    const [revoked] = await adminRevoked;
    assert.equal(revoked.rule, 'escrow-chat');
    assert.match(revoked.reason, /role/);
    const [gone] = await adminLeft;
    assert.equal(gone.id, admin.user_id);
    assert.equal(buyerChat.members.count, 2);

    const sellerRevoked = sellerClient.nextEvent(sellerChat, 'ringcast:subscription_revoked');
    const sellerLeft = buyerClient.nextEvent(buyerChat, 'pusher:member_removed');
    await putResource(broker, 'escrow', escrow, {
      tenant: 't1',
      participants: [buyer.user_id],
      attributes: { status: 'RESOLVED' },
    });
    await sellerRevoked;
    assert.equal((await sellerLeft)[0].id, seller.user_id);

    // Published chat now reaches the buyer only; the withdrawn sockets stay connected.
    const sdk = serverSdk(broker);
    const heard = buyerClient.nextEvent(buyerChat, 'message');
    await sdk.trigger(chat, 'message', { n: 1 });
    await heard;
    assert.equal(adminClient.received((m) => m.channel === chat && m.event === 'message').length, 0);
    assert.equal(sellerClient.received((m) => m.channel === chat && m.event === 'message').length, 0);
    assert.equal(adminClient.state, 'connected');
  });
});
