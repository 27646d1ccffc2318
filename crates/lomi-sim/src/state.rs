//! The simulated data set and every change to it.
//!
//! Customers live in an arena (`customers`, indexed by slot) and are never removed from
//! it: a soft delete only takes the slot out of `live`, the list order. `live` is kept
//! sorted newest first, so an unfiltered list page is a slice of it and a new customer is
//! a binary-search insert.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::io::Write as _;

use serde_json::{Map, Value};

use super::data::{self, DATA_END_MS, DATA_START_MS};
use super::feed::{FeedQuery, FeedRow, served_nanos};
use super::model::{
    Customer, CustomerId, Payer, Profile, Render, Tx, TxId, TxList, TxStatus, parse_customer_id,
};
use super::rng::{Rng, mix64};
use super::search::SearchIndex;
use super::webhooks::{EventKind, TxEvent};
use super::{Drift, Mutation, MutationReport, Paging, SimOptions, TimestampStyle};

pub(super) struct State {
    customers: Vec<Customer>,
    index: HashMap<u64, u32>,
    /// Slots of live customers, newest first (`created_at` desc, then id desc).
    live: Vec<u32>,
    /// Slots of deleted customers, in deletion order.
    deleted: Vec<u32>,
    /// Per slot, [`FLAG_ACTIVE`] and [`FLAG_BUSINESS`]: filtered list pages scan these
    /// bytes instead of touching every customer record, which at 100,000 customers is
    /// the difference between microseconds and milliseconds per page.
    flags: Vec<u8>,
    render: Render,
    search: SearchIndex,
    /// Drives run-time changes (mutations, drift, API-created customers' payer class).
    rng: Rng,
    customer_salt: u64,
    tx_salt: u64,
    next_customer_seq: u64,
    next_tx_seq: u64,
    /// The newest `created_at` ever given out: new customers get a later one.
    last_created_ms: i64,
    /// Every transaction, of live and deleted customers alike, oldest first
    /// (`created_at`, then id): the feed serves it backwards, newest first. Kept in step
    /// with every transaction added or removed, so a feed page is a slice, not a sort;
    /// oldest first so that a new transaction (the newest) is a push, not a shift of a
    /// million entries.
    feed: Vec<FeedKey>,
    /// Payment and refund events not yet handed to the webhook dispatcher; recorded only
    /// while `events_on` (some endpoint is registered), so a simulator without webhooks
    /// renders no row for them.
    outbox: Vec<TxEvent>,
    events_on: bool,
    next_event_seq: u64,
}

/// A transaction's place in the feed and where its record lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FeedKey {
    created_ms: i64,
    id: u64,
    slot: u32,
}

impl FeedKey {
    fn of(tx: &Tx, slot: u32) -> FeedKey {
        FeedKey {
            created_ms: tx.created_ms,
            id: tx.id,
            slot,
        }
    }

    /// The index's order; the feed's is its reverse.
    fn order(&self) -> (i64, u64) {
        (self.created_ms, self.id)
    }
}

const FLAG_ACTIVE: u8 = 1;
const FLAG_BUSINESS: u8 = 2;

fn flags_of(c: &Customer) -> u8 {
    (if c.txs.is_empty() { 0 } else { FLAG_ACTIVE })
        | (if c.profile.is_business {
            FLAG_BUSINESS
        } else {
            0
        })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum TypeFilter {
    All,
    Business,
    Individual,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ListStatus {
    All,
    Active,
    Inactive,
}

/// A validated list request; `page` >= 1, `page_size` already capped.
#[derive(Debug)]
pub(super) struct ListQuery {
    /// Lowercased; `None` when absent or empty.
    pub(super) search: Option<String>,
    pub(super) kind: TypeFilter,
    pub(super) status: ListStatus,
    pub(super) page: u64,
    pub(super) page_size: usize,
}

impl ListQuery {
    fn is_unfiltered(&self) -> bool {
        self.search.is_none() && self.kind == TypeFilter::All && self.status == ListStatus::All
    }

    fn matches(&self, slot: u32, flags: u8, search: &SearchIndex) -> bool {
        let business = flags & FLAG_BUSINESS != 0;
        let active = flags & FLAG_ACTIVE != 0;
        let kind_ok = match self.kind {
            TypeFilter::All => true,
            TypeFilter::Business => business,
            TypeFilter::Individual => !business,
        };
        let status_ok = match self.status {
            ListStatus::All => true,
            ListStatus::Active => active,
            ListStatus::Inactive => !active,
        };
        kind_ok
            && status_ok
            && self
                .search
                .as_deref()
                .is_none_or(|needle| search.matches(slot, needle))
    }
}

/// Field changes from a POST or PATCH body; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub(super) struct ProfilePatch {
    pub(super) name: Option<String>,
    pub(super) email: Option<Option<String>>,
    pub(super) phone_number: Option<Option<String>>,
    pub(super) whatsapp_number: Option<Option<String>>,
    pub(super) country: Option<Option<String>>,
    pub(super) city: Option<Option<String>>,
    pub(super) address: Option<Option<String>>,
    pub(super) postal_code: Option<Option<String>>,
    pub(super) is_business: Option<bool>,
    pub(super) metadata: Option<Map<String, Value>>,
}

impl ProfilePatch {
    fn apply(self, p: &mut Profile) {
        fn set<T>(field: &mut T, value: Option<T>) {
            if let Some(v) = value {
                *field = v;
            }
        }
        set(&mut p.name, self.name);
        set(&mut p.email, self.email);
        set(&mut p.phone_number, self.phone_number);
        set(&mut p.whatsapp_number, self.whatsapp_number);
        set(&mut p.country, self.country);
        set(&mut p.city, self.city);
        set(&mut p.address, self.address);
        set(&mut p.postal_code, self.postal_code);
        set(&mut p.is_business, self.is_business);
        set(&mut p.metadata, self.metadata);
    }
}

impl State {
    pub(super) fn generate(opts: &SimOptions) -> State {
        let seed = opts.seed;
        let mut rng = Rng::new(seed);
        let customer_salt = mix64(seed ^ 0x6375_735f_6964_7321);
        let tx_salt = mix64(seed ^ 0x7478_5f69_6473_2121);
        let render = Render {
            id_key: opts.id_field.key(),
            id_format: opts.id_format,
            organization_id: format!("org_{:016x}", mix64(seed ^ 0x6f72_675f_6964_2121)),
            live_quirks: opts.live_quirks,
        };
        let n = opts.customers;

        // Sign-ups grow over time (density rises linearly), as a growing merchant's do.
        let span = (DATA_END_MS - DATA_START_MS) as f64;
        let mut created: Vec<i64> = (0..n)
            .map(|_| DATA_START_MS + (span * rng.unit().sqrt()) as i64)
            .collect();
        created.sort_unstable();
        for i in 1..n {
            // A bulk import shares the `created_at` of the customer before it: the
            // list's tie-break on id (or its absence, see `Paging::shuffle_ties`) gets
            // exercised.
            if rng.chance(opts.bulk_import_share) {
                created[i] = created[i - 1];
            }
        }

        let mut next_tx_seq = 0u64;
        let mut next_tx_id = || {
            next_tx_seq += 1;
            mix64(next_tx_seq ^ tx_salt)
        };
        let mut customers = Vec::with_capacity(n);
        let mut search = SearchIndex::new();
        for (seq, &created_ms) in created.iter().enumerate() {
            let region = data::pick_region(&mut rng);
            let profile = data::profile(&mut rng, region);
            let payer = data::payer(&mut rng);
            let updated_ms = if rng.chance(0.6) {
                created_ms
            } else {
                let u = rng.unit();
                created_ms + ((DATA_END_MS - created_ms) as f64 * u * u) as i64
            };
            let id = mix64(seq as u64 ^ customer_salt);
            let mut customer =
                Customer::new(id, region, profile, created_ms, updated_ms, payer, &render);
            let count = rng.geometric(data::tx_mean(payer, opts.tx_per_customer));
            customer.txs = data::history(&mut rng, region, created_ms, count, &mut next_tx_id);
            search.set(seq as u32, &customer.profile);
            customers.push(customer);
        }

        let index = customers
            .iter()
            .enumerate()
            .map(|(slot, c)| (c.id, slot as u32))
            .collect();
        let mut live: Vec<u32> = (0..n as u32).collect();
        live.sort_unstable_by_key(|&s| Reverse(customers[s as usize].order_key()));
        let flags = customers.iter().map(flags_of).collect();
        let mut feed: Vec<FeedKey> = customers
            .iter()
            .enumerate()
            .flat_map(|(slot, c)| {
                c.txs.iter().map(move |tx| FeedKey {
                    created_ms: tx.created_ms,
                    id: tx.id,
                    slot: slot as u32,
                })
            })
            .collect();
        feed.sort_unstable_by_key(FeedKey::order);
        State {
            feed,
            flags,
            customers,
            index,
            live,
            deleted: Vec::new(),
            render,
            search,
            // A separate stream, so run-time changes do not depend on how much the
            // generator drew.
            rng: Rng::new(mix64(seed ^ 0x6d75_7461_7465_2121)),
            customer_salt,
            tx_salt,
            next_customer_seq: n as u64,
            next_tx_seq,
            last_created_ms: created.last().copied().unwrap_or(DATA_START_MS),
            outbox: Vec::new(),
            events_on: false,
            next_event_seq: 0,
        }
    }

    pub(super) fn live_count(&self) -> usize {
        self.live.len()
    }

    pub(super) fn transaction_count(&self) -> usize {
        self.live.iter().map(|&s| self.customer(s).txs.len()).sum()
    }

    pub(super) fn id_key(&self) -> &'static str {
        self.render.id_key
    }

    /// A customer's id as this simulator renders it.
    pub(super) fn id_text(&self, id: u64) -> String {
        CustomerId(id, self.render.id_format).to_string()
    }

    fn customer(&self, slot: u32) -> &Customer {
        &self.customers[slot as usize]
    }

    fn customer_mut(&mut self, slot: u32) -> &mut Customer {
        &mut self.customers[slot as usize]
    }

    fn slot_of(&self, id: &str) -> Option<u32> {
        let slot = *self
            .index
            .get(&parse_customer_id(id, self.render.id_format)?)?;
        (!self.customer(slot).deleted).then_some(slot)
    }

    /// A customer that exists and is not deleted.
    pub(super) fn live_customer(&self, id: &str) -> Option<&Customer> {
        self.slot_of(id).map(|s| self.customer(s))
    }

    /// The position of `slot` in `live`, or where it belongs.
    fn live_position(&self, slot: u32) -> Result<usize, usize> {
        let key = Reverse(self.customer(slot).order_key());
        self.live
            .binary_search_by_key(&key, |&s| Reverse(self.customer(s).order_key()))
    }

    fn insert_live(&mut self, slot: u32) {
        if let Err(at) = self.live_position(slot) {
            self.live.insert(at, slot);
        }
    }

    fn remove_live(&mut self, slot: u32) {
        if let Ok(at) = self.live_position(slot) {
            self.live.remove(at);
        }
    }

    /// The JSON body of a list page, misbehaving as `paging` says; `shuffle_seed` orders
    /// tied rows when [`Paging::shuffle_ties`] is on.
    pub(super) fn list_page(&self, q: &ListQuery, paging: &Paging, shuffle_seed: u64) -> Vec<u8> {
        let offset =
            usize::try_from((q.page - 1).saturating_mul(q.page_size as u64)).unwrap_or(usize::MAX);
        let (mut rows, total) = if paging.shuffle_ties {
            self.shuffled_window(q, offset, shuffle_seed)
        } else if q.is_unfiltered() {
            let start = offset.min(self.live.len());
            let end = start.saturating_add(q.page_size).min(self.live.len());
            (self.live[start..end].to_vec(), self.live.len())
        } else {
            let mut rows = Vec::new();
            let mut matched = 0usize;
            for &slot in &self.live {
                if !q.matches(slot, self.flags[slot as usize], &self.search) {
                    continue;
                }
                if matched >= offset && rows.len() < q.page_size {
                    rows.push(slot);
                }
                matched += 1;
            }
            (rows, matched)
        };
        if paging.row_cap > 0 {
            rows.truncate(paging.row_cap as usize);
        }
        let size: usize = rows
            .iter()
            .map(|&s| self.customer(s).list_json().len() + 1)
            .sum();
        let mut out = Vec::with_capacity(size + 128);
        out.extend_from_slice(b"{\"customers\":[");
        for (i, &slot) in rows.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(self.customer(slot).list_json().as_bytes());
        }
        let (total, pages) = reported_totals(
            total,
            q.page_size,
            rows.is_empty(),
            paging,
            self.render.live_quirks,
        );
        // Writing into a Vec cannot fail.
        let _ = write!(
            out,
            "],\"pagination\":{{\"page\":{},\"pageSize\":{},\"totalCount\":{total},\"totalPages\":{pages}}}}}",
            q.page, q.page_size
        );
        out
    }

    /// The rows of one page when tied rows have no stable order: every matching
    /// customer in list order, each run of equal `created_at` shuffled anew.
    fn shuffled_window(&self, q: &ListQuery, offset: usize, seed: u64) -> (Vec<u32>, usize) {
        let mut all: Vec<u32> = self
            .live
            .iter()
            .copied()
            .filter(|&s| q.matches(s, self.flags[s as usize], &self.search))
            .collect();
        let mut rng = Rng::new(seed);
        let mut start = 0;
        while start < all.len() {
            let created = self.customer(all[start]).created_ms;
            let end = start
                + all[start..]
                    .iter()
                    .take_while(|&&s| self.customer(s).created_ms == created)
                    .count();
            let run = &mut all[start..end];
            for i in (1..run.len()).rev() {
                run.swap(i, rng.index(i + 1));
            }
            start = end;
        }
        let total = all.len();
        let from = offset.min(total);
        let to = from.saturating_add(q.page_size).min(total);
        (all[from..to].to_vec(), total)
    }

    /// `{"customers":[...],"transactions":{"<id>":[...]},"deleted_customer_ids":[...]}`.
    pub(super) fn truth_json(&self) -> String {
        let mut out = Vec::new();
        out.extend_from_slice(b"{\"customers\":[");
        for (i, &slot) in self.live.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(self.customer(slot).json().as_bytes());
        }
        out.extend_from_slice(b"],\"transactions\":{");
        for (i, &slot) in self.live.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let c = self.customer(slot);
            let _ = write!(out, "\"{}\":", CustomerId(c.id, self.render.id_format));
            serde_json::to_writer(&mut out, &TxList(&c.txs))
                .expect("transactions serialize to JSON");
        }
        out.extend_from_slice(b"},\"deleted_customer_ids\":[");
        for (i, &slot) in self.deleted.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let id = self.customer(slot).id;
            let _ = write!(out, "\"{}\"", CustomerId(id, self.render.id_format));
        }
        out.extend_from_slice(b"]}");
        String::from_utf8(out).expect("only UTF-8 was written")
    }

    fn next_customer_id(&mut self) -> u64 {
        self.next_customer_seq += 1;
        mix64(self.next_customer_seq ^ self.customer_salt)
    }

    fn next_tx_id(&mut self) -> u64 {
        self.next_tx_seq += 1;
        mix64(self.next_tx_seq ^ self.tx_salt)
    }

    /// Adds a customer at the top of the list: its `created_at` is now, or just after the
    /// newest one, so creation times stay strictly increasing.
    fn insert_new(&mut self, region: usize, profile: Profile, payer: Payer, now_ms: i64) -> u32 {
        let created_ms = now_ms.max(self.last_created_ms + 1);
        self.last_created_ms = created_ms;
        let id = self.next_customer_id();
        let customer = Customer::new(
            id,
            region,
            profile,
            created_ms,
            created_ms,
            payer,
            &self.render,
        );
        let slot = self.customers.len() as u32;
        self.search.set(slot, &customer.profile);
        self.flags.push(flags_of(&customer));
        self.customers.push(customer);
        self.index.insert(id, slot);
        self.insert_live(slot);
        slot
    }

    fn insert_random(&mut self, now_ms: i64) -> u32 {
        let region = data::pick_region(&mut self.rng);
        let profile = data::profile(&mut self.rng, region);
        let payer = data::payer(&mut self.rng);
        self.insert_new(region, profile, payer, now_ms)
    }

    /// `POST /customers`: `patch` has been validated to carry a name.
    pub(super) fn create(&mut self, patch: ProfilePatch, now_ms: i64) -> &Customer {
        let mut profile = Profile::default();
        patch.apply(&mut profile);
        let region = data::region_of_country(profile.country.as_deref());
        let payer = data::payer(&mut self.rng);
        let slot = self.insert_new(region, profile, payer, now_ms);
        self.customer(slot)
    }

    /// `PATCH /customers/{id}`; `None` when the customer does not exist or is deleted.
    pub(super) fn update(
        &mut self,
        id: &str,
        patch: ProfilePatch,
        now_ms: i64,
    ) -> Option<&Customer> {
        let slot = self.slot_of(id)?;
        let country_changed = patch.country.is_some();
        let customer = &mut self.customers[slot as usize];
        patch.apply(&mut customer.profile);
        if country_changed {
            customer.region = data::region_of_country(customer.profile.country.as_deref());
        }
        customer.touch(now_ms);
        customer.refresh(&self.render);
        self.search.set(slot, &customer.profile);
        self.flags[slot as usize] = flags_of(customer);
        Some(self.customer(slot))
    }

    /// `DELETE /customers/{id}`: returns the id when the customer was live.
    pub(super) fn delete(&mut self, id: &str) -> Option<u64> {
        let slot = self.slot_of(id)?;
        self.soft_delete(slot);
        Some(self.customer(slot).id)
    }

    fn soft_delete(&mut self, slot: u32) {
        self.remove_live(slot);
        self.customer_mut(slot).deleted = true;
        self.deleted.push(slot);
    }

    fn restore(&mut self, slot: u32, now_ms: i64) {
        self.deleted.retain(|&s| s != slot);
        let customer = &mut self.customers[slot as usize];
        customer.deleted = false;
        customer.touch(now_ms);
        customer.refresh(&self.render);
        self.insert_live(slot);
    }

    /// Applied before each list page is computed.
    pub(super) fn drift(&mut self, d: &Drift, now_ms: i64) {
        for _ in 0..d.insert_per_page {
            self.insert_random(now_ms);
        }
        for _ in 0..d.delete_per_page {
            if self.live.is_empty() {
                break;
            }
            let slot = self.live[self.rng.index(self.live.len())];
            self.soft_delete(slot);
        }
    }

    pub(super) fn mutate(&mut self, m: &Mutation, now_ms: i64) -> MutationReport {
        let mut report = MutationReport::default();
        let existing = self.live.clone();
        let previously_deleted = self.deleted.clone();
        let format = self.render.id_format;
        let id = |c: &Customer| CustomerId(c.id, format).to_string();

        for _ in 0..m.create {
            let slot = self.insert_random(now_ms);
            report.created.push(id(self.customer(slot)));
        }

        // One draw for both, so updated and deleted customers are distinct.
        let wanted = m.update as usize + m.delete as usize;
        let picks = self.rng.distinct(existing.len(), wanted);
        let (to_update, to_delete) = picks.split_at(picks.len().min(m.update as usize));
        for &i in to_update {
            let slot = existing[i];
            let customer = &mut self.customers[slot as usize];
            data::update_profile(&mut self.rng, customer.region, &mut customer.profile);
            customer.touch(now_ms);
            customer.refresh(&self.render);
            self.search.set(slot, &customer.profile);
            self.flags[slot as usize] = flags_of(customer);
            report.updated.push(id(customer));
        }
        for &i in to_delete {
            let slot = existing[i];
            self.soft_delete(slot);
            report.deleted.push(id(self.customer(slot)));
        }

        for i in self
            .rng
            .distinct(previously_deleted.len(), m.restore as usize)
        {
            let slot = previously_deleted[i];
            self.restore(slot, now_ms);
            report.restored.push(id(self.customer(slot)));
        }

        if m.add_tx > 0 {
            report.tx_added = self.add_transactions(m.add_tx, now_ms);
        }
        if m.settle > 0 {
            report.tx_changed = self.settle(m.settle as usize, now_ms);
        }
        if m.delete_tx > 0 {
            report.tx_deleted = self.delete_transactions(m.delete_tx as usize);
        }
        let newest = self.feed.iter().rev().take(m.delete_newest_tx as usize);
        for key in newest.copied().collect::<Vec<_>>() {
            report
                .tx_deleted
                .push(self.delete_transaction(key.slot, key.id));
        }
        report
    }

    /// New transactions for live customers drawn by payer weight; a customer's
    /// `updated_at` does not move.
    fn add_transactions(&mut self, count: u32, now_ms: i64) -> Vec<String> {
        let mut cumulative = Vec::new();
        let mut slots = Vec::new();
        let mut total = 0u64;
        for &slot in &self.live {
            let weight = self.customer(slot).payer.add_tx_weight();
            if weight > 0 {
                total += weight;
                cumulative.push(total);
                slots.push(slot);
            }
        }
        let mut added = Vec::new();
        if total == 0 {
            return added;
        }
        for _ in 0..count {
            let roll = self.rng.below(total);
            let slot = slots[cumulative.partition_point(|&c| c <= roll)];
            let tx_id = self.next_tx_id();
            let customer = &mut self.customers[slot as usize];
            let at_ms = customer
                .txs
                .last()
                .map_or(now_ms, |last| now_ms.max(last.created_ms + 1));
            let tx = data::new_transaction(&mut self.rng, customer.region, tx_id, at_ms);
            customer.txs.push(tx);
            self.flags[slot as usize] |= FLAG_ACTIVE;
            let key = FeedKey {
                created_ms: at_ms,
                id: tx_id,
                slot,
            };
            self.feed_insert(key);
            self.emit(&[EventKind::PaymentCreated], &key, now_ms);
            added.push(TxId(tx_id).to_string());
        }
        added
    }

    /// Settles pending payments; once none is left, refunds completed ones. Each change
    /// bumps the transaction's `updated_at` (the feed shows it).
    fn settle(&mut self, count: usize, now_ms: i64) -> Vec<String> {
        let mut pending = Vec::new();
        let mut completed = Vec::new();
        for &slot in &self.live {
            for (i, tx) in self.customer(slot).txs.iter().enumerate() {
                match tx.status {
                    TxStatus::Pending => pending.push((slot, i)),
                    TxStatus::Completed => completed.push((slot, i)),
                    _ => {}
                }
            }
        }
        let mut changed = Vec::new();
        for i in self.rng.distinct(pending.len(), count) {
            let (slot, t) = pending[i];
            let status = data::settle_outcome(&mut self.rng);
            let tx = &mut self.customers[slot as usize].txs[t];
            tx.status = status;
            tx.touch(now_ms);
            let key = FeedKey::of(tx, slot);
            changed.push(TxId(tx.id).to_string());
            self.emit(EventKind::of_settlement(status), &key, now_ms);
        }
        let refunds = count - changed.len();
        for i in self.rng.distinct(completed.len(), refunds) {
            let (slot, t) = completed[i];
            let tx = &mut self.customers[slot as usize].txs[t];
            tx.status = TxStatus::Refunded;
            tx.touch(now_ms);
            let key = FeedKey::of(tx, slot);
            changed.push(TxId(tx.id).to_string());
            self.emit(
                &[EventKind::RefundCreated, EventKind::RefundCompleted],
                &key,
                now_ms,
            );
        }
        changed
    }

    fn delete_transactions(&mut self, count: usize) -> Vec<String> {
        let all: Vec<(u32, u64)> = self
            .live
            .iter()
            .flat_map(|&slot| self.customer(slot).txs.iter().map(move |tx| (slot, tx.id)))
            .collect();
        let picked = self.rng.distinct(all.len(), count);
        picked
            .into_iter()
            .map(|i| self.delete_transaction(all[i].0, all[i].1))
            .collect()
    }

    /// Removes transaction `tx_id` from customer `slot`'s list and the feed; its id.
    fn delete_transaction(&mut self, slot: u32, tx_id: u64) -> String {
        if let Some(tx) = self.customer(slot).txs.iter().find(|tx| tx.id == tx_id) {
            let key = FeedKey::of(tx, slot);
            self.feed_remove(key);
        }
        self.customer_mut(slot).txs.retain(|tx| tx.id != tx_id);
        self.flags[slot as usize] = flags_of(self.customer(slot));
        TxId(tx_id).to_string()
    }
}

/// The feed (`GET /transactions`, `GET /transactions/{id}`).
impl State {
    fn feed_insert(&mut self, key: FeedKey) {
        let at = self.feed.partition_point(|k| k.order() < key.order());
        self.feed.insert(at, key);
    }

    fn feed_remove(&mut self, key: FeedKey) {
        if let Ok(at) = self.feed.binary_search_by_key(&key.order(), FeedKey::order) {
            self.feed.remove(at);
        }
    }

    fn feed_tx(&self, key: &FeedKey) -> &Tx {
        let txs = &self.customer(key.slot).txs;
        let at = txs
            .binary_search_by_key(&(key.created_ms, key.id), |t| (t.created_ms, t.id))
            .expect("the feed index lists only transactions that exist");
        &txs[at]
    }

    /// How many transactions the feed lists (deleted customers' included).
    pub(super) fn feed_len(&self) -> usize {
        self.feed.len()
    }

    /// The JSON array of one feed page: the rows whose served `created_at` (see
    /// [`served_nanos`]) lies within the bounds and that pass the filters, offset by
    /// `(page - 1) * pageSize` as requested, at most `min(pageSize, row_cap)` of them.
    pub(super) fn feed_page(
        &self,
        q: &FeedQuery,
        row_cap: usize,
        style: TimestampStyle,
    ) -> Vec<u8> {
        let served = |k: &FeedKey| served_nanos(k.created_ms, style);
        // The rows from `startDate` to `endDate`, served from the newest.
        let from = q
            .start_ns
            .map_or(0, |start| self.feed.partition_point(|k| served(k) < start));
        let to = q.end_ns.map_or(self.feed.len(), |end| {
            self.feed.partition_point(|k| served(k) <= end)
        });
        let window = self.feed[from..to.max(from)].iter().rev();
        let offset =
            usize::try_from((q.page - 1).saturating_mul(q.page_size)).unwrap_or(usize::MAX);
        let take = usize::try_from(q.page_size)
            .unwrap_or(usize::MAX)
            .min(row_cap);
        let rows: Vec<&FeedKey> = if q.is_unfiltered() {
            window.skip(offset).take(take).collect()
        } else {
            window
                .filter(|k| q.matches(self.feed_tx(k)))
                .skip(offset)
                .take(take)
                .collect()
        };
        let mut out = Vec::with_capacity(rows.len() * 900 + 2);
        out.push(b'[');
        for (i, k) in rows.into_iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            self.write_feed_row(&mut out, k);
        }
        out.push(b']');
        out
    }

    /// `GET /transactions/{id}`: the row, `None` for an id the feed does not list (never
    /// existed, or removed).
    pub(super) fn feed_transaction(&self, id: &str) -> Option<Vec<u8>> {
        let hex = id.strip_prefix("tx_")?;
        let valid = hex.len() == 16 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        let n = u64::from_str_radix(hex, 16).ok().filter(|_| valid)?;
        let key = self.feed.iter().find(|k| k.id == n)?;
        let mut out = Vec::with_capacity(1024);
        self.write_feed_row(&mut out, key);
        Some(out)
    }

    fn write_feed_row(&self, out: &mut Vec<u8>, k: &FeedKey) {
        let row = FeedRow {
            tx: self.feed_tx(k),
            customer: CustomerId(self.customer(k.slot).id, self.render.id_format),
            organization_id: &self.render.organization_id,
        };
        serde_json::to_writer(out, &row).expect("a feed row serializes to JSON");
    }

    /// Starts (or stops) recording payment and refund events for the webhooks.
    pub(super) fn set_events(&mut self, on: bool) {
        self.events_on = on;
    }

    /// The events recorded since the last call, oldest first.
    pub(super) fn take_events(&mut self) -> Vec<TxEvent> {
        std::mem::take(&mut self.outbox)
    }

    /// Records `kinds` for the transaction at `key`, each with its row as
    /// `GET /transactions/{id}` renders it now (NOTES.md, Webhooks: `data` is that row).
    fn emit(&mut self, kinds: &[EventKind], key: &FeedKey, now_ms: i64) {
        if !self.events_on || kinds.is_empty() {
            return;
        }
        let mut row = Vec::with_capacity(1024);
        self.write_feed_row(&mut row, key);
        let row: std::sync::Arc<[u8]> = row.into();
        for &kind in kinds {
            self.next_event_seq += 1;
            self.outbox.push(TxEvent {
                seq: self.next_event_seq,
                kind,
                at_ms: now_ms,
                row: row.clone(),
            });
        }
    }

    /// Feed drift: `count` new transactions, as `add_tx` makes them.
    pub(super) fn feed_drift(&mut self, count: u32, now_ms: i64) {
        self.add_transactions(count, now_ms);
    }
}

/// `totalCount` and `totalPages` as a page reports them. The live service reads the count
/// from the page's first row, so a page past the end says 0 (NOTES.md); `paging` may lie.
fn reported_totals(
    total: usize,
    page_size: usize,
    empty: bool,
    paging: &Paging,
    live_quirks: bool,
) -> (i64, i64) {
    if empty && live_quirks {
        return (0, 0);
    }
    let count = (total as i64 + paging.total_count_delta).max(0);
    let pages = count.div_euclid(page_size as i64) + i64::from(count % page_size as i64 != 0);
    (count, (pages + paging.total_pages_delta).max(0))
}

#[cfg(test)]
mod flag_tests {
    use super::*;

    /// The compact flags must always agree with the records they summarise.
    #[test]
    fn flags_follow_every_mutation() {
        let mut state = State::generate(&SimOptions {
            customers: 300,
            ..SimOptions::default()
        });
        let check = |s: &State| {
            for (slot, c) in s.customers.iter().enumerate() {
                assert_eq!(s.flags[slot], flags_of(c), "slot {slot}");
            }
        };
        check(&state);
        for _ in 0..5 {
            state.mutate(
                &Mutation {
                    create: 5,
                    update: 10,
                    delete: 3,
                    restore: 1,
                    add_tx: 40,
                    settle: 5,
                    delete_tx: 30,
                    delete_newest_tx: 0,
                },
                1_900_000_000_000,
            );
            check(&state);
        }
    }

    /// Each change makes its events, each with the row `GET /transactions/{id}` serves
    /// after it: a creation `PAYMENT_CREATED`; a settlement `PAYMENT_SUCCEEDED`,
    /// `PAYMENT_FAILED` or nothing (expired); a refund `REFUND_CREATED` then
    /// `REFUND_COMPLETED`. Nothing is recorded while events are off.
    #[test]
    fn events_follow_creations_settlements_and_refunds() {
        use crate::webhooks::EventKind as K;
        let mut state = State::generate(&SimOptions {
            customers: 200,
            ..SimOptions::default()
        });
        let now = 1_900_000_000_000;
        state.mutate(
            &Mutation {
                add_tx: 3,
                settle: 3,
                ..Mutation::default()
            },
            now,
        );
        assert!(state.take_events().is_empty(), "events while off");
        state.set_events(true);
        let added = state.mutate(
            &Mutation {
                add_tx: 5,
                ..Mutation::default()
            },
            now,
        );
        let events = state.take_events();
        assert_eq!(events.len(), 5);
        for (e, id) in events.iter().zip(&added.tx_added) {
            assert_eq!(e.kind, K::PaymentCreated);
            assert_eq!(&*e.row, &state.feed_transaction(id).unwrap()[..]);
        }
        // More settlements than pending payments: every pending one settles, then refunds.
        let changed = state.mutate(
            &Mutation {
                settle: 3000,
                ..Mutation::default()
            },
            now,
        );
        let events = state.take_events();
        let mut seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
        seqs.dedup();
        assert_eq!(seqs.len(), events.len(), "event numbers are unique");
        let mut by_tx: HashMap<String, Vec<K>> = HashMap::new();
        for e in &events {
            let row: Value = serde_json::from_slice(&e.row).unwrap();
            let id = row["transaction_id"].as_str().unwrap().to_owned();
            assert_eq!(&*e.row, &state.feed_transaction(&id).unwrap()[..]);
            by_tx.entry(id).or_default().push(e.kind);
        }
        let mut seen = [0usize; 4];
        for id in &changed.tx_changed {
            let row: Value = serde_json::from_slice(&state.feed_transaction(id).unwrap()).unwrap();
            let kinds = by_tx.get(id).cloned().unwrap_or_default();
            let (expected, i): (&[K], usize) = match row["status"].as_str().unwrap() {
                "completed" => (&[K::PaymentSucceeded], 0),
                "failed" => (&[K::PaymentFailed], 1),
                "expired" => (&[], 2),
                "refunded" => (&[K::RefundCreated, K::RefundCompleted], 3),
                other => panic!("{other}"),
            };
            assert_eq!(kinds, expected, "{id}");
            seen[i] += 1;
        }
        assert!(
            seen.iter().all(|&n| n > 0),
            "every kind of change happened: {seen:?}"
        );
    }

    /// The feed's index must list exactly the transactions that exist, live customers'
    /// and deleted customers' alike, newest first.
    #[test]
    fn feed_index_follows_every_mutation() {
        let mut state = State::generate(&SimOptions {
            customers: 300,
            ..SimOptions::default()
        });
        let check = |s: &State| {
            let mut expected: Vec<FeedKey> = s
                .customers
                .iter()
                .enumerate()
                .flat_map(|(slot, c)| {
                    c.txs.iter().map(move |t| FeedKey {
                        created_ms: t.created_ms,
                        id: t.id,
                        slot: slot as u32,
                    })
                })
                .collect();
            expected.sort_unstable_by_key(FeedKey::order);
            assert_eq!(s.feed, expected);
        };
        for _ in 0..5 {
            state.mutate(
                &Mutation {
                    delete: 10,
                    add_tx: 40,
                    settle: 5,
                    delete_tx: 30,
                    ..Mutation::default()
                },
                1_900_000_000_000,
            );
            state.feed_drift(3, 1_900_000_000_500);
            check(&state);
        }
    }
}
