//! Listing strategies: sequential pages, then key ranges listed at once
//! (split at the next level of key names, or where an earlier listing says
//! the keys are). Ranges are half-open, so they neither overlap nor leave a gap.

use super::S3Store;
use crate::store::{ObjectInfo, StoreError};

/// Listing pages fetched one after the other before the rest of a listing is
/// split into ranges: most listings end within them (1,000 keys a page).
const SEQUENTIAL_PAGES: usize = 3;
/// Key ranges listed at once after that.
const RANGES: usize = 4;
/// Keys in a full listing page (the S3 default and maximum).
const PAGE_KEYS: usize = 1000;
/// Key ranges listed at once when an earlier listing says where the keys are.
const HINTED_RANGES: usize = 8;

/// Where a listing request starts.
enum From {
    Start,
    Token(String),
    /// The first key greater than this one.
    After(String),
}

/// A part of a listing: the keys in `[lo, hi)` (unbounded where `None`).
struct ListRange {
    /// Where its first request starts.
    from: From,
    lo: Option<String>,
    hi: Option<String>,
    /// How many keys the range held before, when an earlier listing says.
    expected: Option<usize>,
}

impl ListRange {
    /// The half-open ranges that `bounds` (sorted) cut a listing into: the
    /// first listed from `first`, each other from just below its bound;
    /// `expected(i)` is what range `i` is expected to hold.
    fn between(
        first: From,
        bounds: &[String],
        expected: impl Fn(usize) -> Option<usize>,
    ) -> Vec<ListRange> {
        let mut ranges = Vec::with_capacity(bounds.len() + 1);
        ranges.push(ListRange {
            from: first,
            lo: None,
            hi: bounds.first().cloned(),
            expected: expected(0),
        });
        for (i, bound) in bounds.iter().enumerate() {
            ranges.push(ListRange {
                from: From::After(just_before(bound)),
                lo: Some(bound.clone()),
                hi: bounds.get(i + 1).cloned(),
                expected: expected(i + 1),
            });
        }
        ranges
    }
}

struct Page {
    objects: Vec<ObjectInfo>,
    /// Common prefixes, when asked for with a delimiter.
    prefixes: Vec<String>,
    next: Option<String>,
}

impl S3Store {
    /// One ListObjectsV2 request; keys are full keys.
    async fn list_page(
        &self,
        prefix: &str,
        full_prefix: &str,
        from: &From,
        delimiter: Option<&str>,
        max_keys: Option<usize>,
    ) -> Result<Page, StoreError> {
        let mut req = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(full_prefix)
            .set_delimiter(delimiter.map(str::to_string))
            .set_max_keys(max_keys.and_then(|n| i32::try_from(n).ok()));
        req = match from {
            From::Start => req,
            From::Token(t) => req.continuation_token(t),
            From::After(k) => req.start_after(k),
        };
        let out = req
            .send()
            .await
            .map_err(|e| self.classify("list", prefix, e))?;
        let objects = out
            .contents()
            .iter()
            .filter_map(|o| {
                Some(ObjectInfo {
                    key: o.key()?.to_string(),
                    size: o.size().unwrap_or(0).max(0) as u64,
                    etag: o.e_tag().map(str::to_string),
                    modified: o.last_modified().and_then(super::time_of),
                })
            })
            .collect();
        let prefixes = out
            .common_prefixes()
            .iter()
            .filter_map(|p| p.prefix().map(str::to_string))
            .collect();
        let next = match (out.is_truncated(), out.next_continuation_token()) {
            (Some(true), Some(t)) => Some(t.to_string()),
            _ => None,
        };
        Ok(Page {
            objects,
            prefixes,
            next,
        })
    }

    /// Lists key ranges at once; their keys, in range order.
    async fn list_ranges(
        &self,
        prefix: &str,
        full_prefix: &str,
        ranges: Vec<ListRange>,
    ) -> Result<Vec<ObjectInfo>, StoreError> {
        let lists = futures::future::try_join_all(
            ranges
                .into_iter()
                .map(|range| self.list_range(prefix, full_prefix, range)),
        )
        .await?;
        Ok(lists.into_iter().flatten().collect())
    }

    /// Length of the store's prefix in a full key.
    fn strip_len(&self) -> usize {
        if self.prefix.is_empty() {
            0
        } else {
            self.prefix.len() + 1
        }
    }

    /// The keys of `range`. With an expected count, pages are sized to end
    /// just past the range instead of listing up to a page beyond it.
    async fn list_range(
        &self,
        prefix: &str,
        full_prefix: &str,
        range: ListRange,
    ) -> Result<Vec<ObjectInfo>, StoreError> {
        let ListRange {
            mut from,
            lo,
            hi,
            expected,
        } = range;
        let mut out = Vec::new();
        loop {
            // One key more than expected, to see the key that ends the range;
            // once past the count (keys were added), whole pages again.
            let max_keys = expected
                .and_then(|n| n.checked_sub(out.len()))
                .filter(|&left| left > 0)
                .map(|left| (left + 1).min(PAGE_KEYS));
            let page = self
                .list_page(prefix, full_prefix, &from, None, max_keys)
                .await?;
            for o in page.objects {
                if hi.as_deref().is_some_and(|hi| o.key.as_str() >= hi) {
                    return Ok(out);
                }
                if lo.as_deref().is_none_or(|lo| o.key.as_str() >= lo) {
                    out.push(o);
                }
            }
            match page.next {
                Some(token) => from = From::Token(token),
                None => return Ok(out),
            }
        }
    }
}

/// Up to `ranges - 1` bounds taken evenly from the sorted common prefixes
/// `prefixes`; none when there are too few to split on.
fn split_points(prefixes: &[String], ranges: usize) -> Vec<String> {
    if prefixes.len() < 2 || ranges < 2 {
        return Vec::new();
    }
    let ranges = ranges.min(prefixes.len());
    let mut bounds: Vec<String> = (1..ranges)
        .map(|i| prefixes[i * prefixes.len() / ranges].clone())
        .collect();
    bounds.dedup();
    bounds
}

/// The ranges of a listing that an earlier one (`earlier`, sorted) says
/// holds these keys: each range's first key (none for the first range) and
/// how many keys it held. As few ranges as fit in `max_ranges` with the same
/// number of pages each, where a range's last page also has to show the key
/// that starts the next range.
fn hinted_ranges<'a>(
    earlier: &[&'a str],
    max_ranges: usize,
    page: usize,
) -> Vec<(Option<&'a str>, usize)> {
    let per_page = page.saturating_sub(1).max(1);
    let pages = earlier.len().div_ceil(per_page);
    let ranges = pages.div_ceil(pages.div_ceil(max_ranges.max(1)).max(1));
    let per_range = earlier.len().div_ceil(ranges.max(1)).max(1);
    earlier
        .chunks(per_range)
        .enumerate()
        .map(|(i, chunk)| (chunk.first().copied().filter(|_| i > 0), chunk.len()))
        .collect()
}

/// A key that sorts before `bound` and after nothing `bound` starts: the
/// `start-after` of the range that begins at `bound` (keys below `bound`
/// that it lets through are dropped by the range's lower bound).
fn just_before(bound: &str) -> String {
    let mut s = bound.to_string();
    s.pop();
    s
}

/// Relative, sorted keys.
fn finish(mut keys: Vec<ObjectInfo>, strip: usize) -> Vec<ObjectInfo> {
    keys.retain_mut(|o| match o.key.get(strip..) {
        Some(rel) => {
            o.key = rel.to_string();
            true
        }
        None => false,
    });
    keys.sort_by(|a, b| a.key.cmp(&b.key));
    keys
}

impl S3Store {
    /// [`ObjectStore::list`](crate::store::ObjectStore::list): a few pages one
    /// after the other, then the rest split into key ranges listed at once.
    pub(super) async fn list_all(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let full_prefix = self.join(prefix);
        let mut keys = Vec::new();
        let mut from = From::Start;
        for _ in 0..SEQUENTIAL_PAGES {
            let page = self
                .list_page(prefix, &full_prefix, &from, None, None)
                .await?;
            keys.extend(page.objects);
            match page.next {
                Some(token) => from = From::Token(token),
                None => return Ok(finish(keys, self.strip_len())),
            }
        }
        // A large listing: the rest is split into key ranges at the next
        // level of the key names, listed at once. Ranges are half-open
        // [bound, next bound), so they neither overlap nor leave a gap.
        let last = keys.last().map(|o| o.key.clone()).unwrap_or_default();
        let mut after = self
            .list_page(
                prefix,
                &full_prefix,
                &From::After(last.clone()),
                Some("/"),
                None,
            )
            .await?
            .prefixes;
        // The prefix holding `last` sorts before it: the first range has the
        // rest of it.
        after.retain(|p| *p > last);
        let bounds = split_points(&after, RANGES);
        let ranges = ListRange::between(from, &bounds, |_| None);
        keys.extend(self.list_ranges(prefix, &full_prefix, ranges).await?);
        Ok(finish(keys, self.strip_len()))
    }

    /// [`ObjectStore::list_with_hint`](crate::store::ObjectStore::list_with_hint):
    /// ranges chosen from an earlier listing, listed at once.
    pub(super) async fn list_hinted(
        &self,
        prefix: &str,
        earlier: &[&str],
    ) -> Result<Vec<ObjectInfo>, StoreError> {
        let mut hint: Vec<&str> = earlier
            .iter()
            .copied()
            .filter(|k| k.starts_with(prefix))
            .collect();
        if !hint.is_sorted() {
            hint.sort_unstable();
        }
        hint.dedup();
        let starts = hinted_ranges(&hint, HINTED_RANGES, PAGE_KEYS);
        if starts.len() < 2 {
            return self.list_all(prefix).await;
        }
        // Ranges are half-open [start, next start): whatever was added or
        // removed since, every key falls in exactly one of them.
        let bounds: Vec<String> = starts
            .iter()
            .filter_map(|&(start, _)| start.map(|k| self.join(k)))
            .collect();
        let ranges = ListRange::between(From::Start, &bounds, |i| {
            starts.get(i).map(|&(_, expected)| expected)
        });
        let keys = self.list_ranges(prefix, &self.join(prefix), ranges).await?;
        Ok(finish(keys, self.strip_len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_ranges_split_evenly_at_prefixes() {
        let p: Vec<String> = (0..10).map(|i| format!("a/d{i}/")).collect();
        assert_eq!(split_points(&p, 4), ["a/d2/", "a/d5/", "a/d7/"]);
        assert_eq!(split_points(&p[..2], 4), ["a/d1/"]);
        assert!(
            split_points(&p[..1], 4).is_empty(),
            "one prefix: nothing to split"
        );
        assert!(split_points(&[], 4).is_empty());
        // The start-after of a range sorts before every key of the range.
        for b in &p {
            let before = just_before(b);
            assert!(before.as_str() < b.as_str() && b.starts_with(&before));
        }
        let keys = ["p/b", "p/a", "x"]
            .map(|k| ObjectInfo {
                key: k.into(),
                size: 0,
                etag: None,
                modified: None,
            })
            .to_vec();
        let rel: Vec<String> = finish(keys, 2).into_iter().map(|o| o.key).collect();
        assert_eq!(
            rel,
            ["a", "b"],
            "sorted, and a key shorter than the prefix dropped"
        );
    }

    #[test]
    fn hinted_ranges_fill_their_pages() {
        let keys: Vec<String> = (0..20_000).map(|i| format!("k{i:05}")).collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let r = hinted_ranges(&keys, 8, 1000);
        // 21 pages' worth: 7 ranges of 3 pages rather than 8 with a page
        // each mostly empty.
        assert_eq!(r.len(), 7);
        assert_eq!(r[0], (None, 2858));
        assert_eq!(r[1], (Some("k02858"), 2858));
        assert_eq!(r[6], (Some("k17148"), 2852));
        assert_eq!(r.iter().map(|&(_, n)| n).sum::<usize>(), keys.len());
        let r = hinted_ranges(&keys[..2000], 8, 1000);
        assert_eq!(
            r,
            [(None, 667), (Some("k00667"), 667), (Some("k01334"), 666)]
        );
        assert_eq!(hinted_ranges(&keys[..999], 8, 1000), [(None, 999)]);
        assert!(hinted_ranges(&[], 8, 1000).is_empty());
        assert_eq!(
            hinted_ranges(&keys[..5], 2, 1),
            [(None, 3), (Some("k00003"), 2)]
        );
    }
}
