//! [`Text`]: the immutable string every per-proxy field is held in, and
//! the [`Interner`] an inventory read shares repeated values through.
//!
//! Why not `String`: a million proxies each hold an id, a host, a pool and a
//! provider. As `String`s that is 24 bytes inline plus an allocation each
//! (32 bytes at least, with malloc's header), ~200 bytes a proxy for values
//! that are mostly short (`10.1.2.3`) or the same for every proxy of a pool.
//! A [`Text`] is 16 bytes, holds up to 15 bytes without allocating, and a
//! longer value is reference-counted, so an interned pool name is one
//! allocation for the whole inventory.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;

/// Bytes a [`Text`] holds without allocating.
const INLINE: usize = 15;

/// An immutable string of 16 bytes (`Option<Text>` too): inline up to 15
/// bytes, shared (`Arc`) beyond. Reads as a `str` (`Deref`), compares,
/// hashes, orders, prints and (de)serialises exactly as a `String` with
/// the same value, so a field can change from `String` to `Text` without
/// changing its JSON or its `Debug` form.
#[derive(Clone)]
pub struct Text(Repr);

#[derive(Clone)]
enum Repr {
    /// The bytes, NUL-padded: the value ends after its last non-NUL byte,
    /// so no length byte is needed and 15 bytes fit beside the tag. A
    /// value that itself ends in NUL is never stored here.
    Inline([u8; INLINE]),
    /// A longer value. The `Box` keeps the pointer thin (8 bytes, where an
    /// `Arc<str>` is 16), which is what lets the whole `Text` be 16 bytes.
    Heap(Arc<Box<str>>),
}

impl Text {
    /// The empty string (inline, no allocation).
    pub const fn new() -> Text {
        Text(Repr::Inline([0; INLINE]))
    }

    /// The value.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Inline(b) => {
                let n = b.iter().rposition(|c| *c != 0).map_or(0, |i| i + 1);
                // Always valid: the bytes were copied from a `str` and cut
                // where it ended. The fallback is never taken.
                std::str::from_utf8(&b[..n]).unwrap_or_default()
            }
            Repr::Heap(s) => s,
        }
    }

    /// True when the value is held inline (no allocation, nothing to share).
    fn fits_inline(s: &str) -> bool {
        s.len() <= INLINE && !s.ends_with('\0')
    }

    /// True when two values share one allocation (what interning buys).
    #[cfg(test)]
    pub(crate) fn shares_with(&self, other: &Text) -> bool {
        match (&self.0, &other.0) {
            (Repr::Heap(a), Repr::Heap(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Default for Text {
    fn default() -> Self {
        Text::new()
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Self {
        if Text::fits_inline(s) {
            let mut b = [0; INLINE];
            b[..s.len()].copy_from_slice(s.as_bytes());
            Text(Repr::Inline(b))
        } else {
            Text(Repr::Heap(Arc::new(Box::from(s))))
        }
    }
}

impl From<String> for Text {
    fn from(s: String) -> Self {
        if Text::fits_inline(&s) {
            Text::from(s.as_str())
        } else {
            // Reuses the String's buffer (shrunk to fit) instead of copying.
            Text(Repr::Heap(Arc::new(s.into_boxed_str())))
        }
    }
}

impl From<&String> for Text {
    fn from(s: &String) -> Self {
        Text::from(s.as_str())
    }
}

impl From<Box<str>> for Text {
    fn from(s: Box<str>) -> Self {
        Text::from(String::from(s))
    }
}

impl From<&Text> for Text {
    fn from(s: &Text) -> Self {
        s.clone()
    }
}

impl From<Text> for String {
    fn from(t: Text) -> Self {
        t.as_str().to_owned()
    }
}

impl From<&Text> for String {
    fn from(t: &Text) -> Self {
        t.as_str().to_owned()
    }
}

impl Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for Text {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for Text {
    fn eq(&self, other: &Text) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Text {}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Text {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other.as_str()
    }
}

impl PartialEq<Text> for str {
    fn eq(&self, other: &Text) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<Text> for &str {
    fn eq(&self, other: &Text) -> bool {
        *self == other.as_str()
    }
}

impl PartialEq<Text> for String {
    fn eq(&self, other: &Text) -> bool {
        self.as_str() == other.as_str()
    }
}

impl PartialOrd for Text {
    fn partial_cmp(&self, other: &Text) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Text {
    fn cmp(&self, other: &Text) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Hash for Text {
    // As `str` hashes: `Borrow<str>` lookups depend on it.
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.as_str().hash(h)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl serde::Serialize for Text {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Text {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Through `String`: the same accepted inputs and error messages.
        String::deserialize(d).map(Text::from)
    }
}

/// Free-form labels of a proxy: a map, shared between proxies that carry
/// the same one and absent (8 bytes, no allocation) for the many that
/// carry none. Reads as a `BTreeMap` (`Deref`); serialises as one.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Labels(Option<Arc<BTreeMap<String, String>>>);

/// What an absent map reads as.
static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

impl Labels {
    /// No labels.
    pub const fn new() -> Labels {
        Labels(None)
    }

    /// True when there are no labels (the map's own `is_empty`, callable
    /// as a path, as serde's `skip_serializing_if` needs).
    pub fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|m| m.is_empty())
    }
}

#[cfg(test)]
impl Labels {
    /// True when both are the same map in memory.
    pub(crate) fn shares_with(&self, other: &Labels) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Deref for Labels {
    type Target = BTreeMap<String, String>;
    fn deref(&self) -> &BTreeMap<String, String> {
        self.0.as_deref().unwrap_or(&NO_LABELS)
    }
}

impl From<BTreeMap<String, String>> for Labels {
    fn from(m: BTreeMap<String, String>) -> Self {
        Labels((!m.is_empty()).then(|| Arc::new(m)))
    }
}

impl FromIterator<(String, String)> for Labels {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(it: I) -> Self {
        Labels::from(it.into_iter().collect::<BTreeMap<_, _>>())
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl serde::Serialize for Labels {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for Labels {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        BTreeMap::deserialize(d).map(Labels::from)
    }
}

/// Shares repeated values while an inventory is read: every proxy of a pool
/// gets the same pool [`Text`], every proxy with the same labels the same
/// map. Only values that would allocate are kept (an inline [`Text`] is
/// as cheap to copy as to share). Dropped with the read.
#[derive(Default)]
pub(crate) struct Interner {
    texts: HashSet<Text>,
    labels: HashSet<Arc<BTreeMap<String, String>>>,
}

impl Interner {
    /// The shared [`Text`] equal to `t`.
    pub(crate) fn text(&mut self, t: Text) -> Text {
        if matches!(t.0, Repr::Inline(_)) {
            return t;
        }
        if let Some(known) = self.texts.get(t.as_str()) {
            return known.clone();
        }
        self.texts.insert(t.clone());
        t
    }

    /// The shared [`Labels`] equal to `l`.
    pub(crate) fn labels(&mut self, l: Labels) -> Labels {
        let Some(m) = l.0 else {
            return Labels::new();
        };
        if let Some(known) = self.labels.get(&*m) {
            return Labels(Some(known.clone()));
        }
        self.labels.insert(m.clone());
        Labels(Some(m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(std::mem::size_of::<Text>(), 16);
        assert_eq!(std::mem::size_of::<Option<Text>>(), 16);
        assert_eq!(std::mem::size_of::<Labels>(), 8);
    }

    #[test]
    fn values_round_trip_inline_and_on_the_heap() {
        let cases = [
            "",
            "a",
            "10.1.2.3",
            "255.255.255.255",  // 15 bytes: the longest inline
            "255.255.255.2550", // 16: heap
            "a\0b",             // interior NUL: inline, kept
            "ab\0",             // trailing NUL: heap, kept
            "\0",
            "é日本語テキスト", // multi-byte, 22 bytes
            "日本語テキ",      // 15 bytes of multi-byte
            "socks5://user@proxy.example.com:1080",
        ];
        for s in cases {
            let t = Text::from(s);
            assert_eq!(t.as_str(), s, "{s:?}");
            assert_eq!(t.len(), s.len(), "{s:?}");
            assert_eq!(Text::from(s.to_string()).as_str(), s, "{s:?}");
            assert_eq!(String::from(&t), s);
            assert_eq!(
                matches!(t.0, Repr::Inline(_)),
                s.len() <= 15 && !s.ends_with('\0'),
                "{s:?}"
            );
        }
    }

    #[test]
    fn behaves_as_the_string_it_holds() {
        use std::collections::hash_map::DefaultHasher;
        let hash = |h: &dyn Fn(&mut DefaultHasher)| {
            let mut s = DefaultHasher::new();
            h(&mut s);
            s.finish()
        };
        for s in ["", "pool-a", "a-provider-name-longer-than-15"] {
            let t = Text::from(s);
            assert_eq!(format!("{t}"), format!("{s}"));
            assert_eq!(format!("{t:?}"), format!("{:?}", s.to_string()));
            assert_eq!(format!("{t:>40}"), format!("{s:>40}"));
            assert_eq!(
                serde_json::to_string(&t).unwrap(),
                serde_json::to_string(s).unwrap()
            );
            let back: Text = serde_json::from_str(&serde_json::to_string(s).unwrap()).unwrap();
            assert_eq!(back, t);
            assert_eq!(hash(&|h| t.hash(h)), hash(&|h| s.hash(h)));
            let owned = s.to_string();
            assert!(t == s, "Text == &str");
            assert!(s == t, "&str == Text");
            assert!(t == *s, "Text == str");
            assert!(*s == t, "str == Text");
            assert!(t == owned, "Text == String");
            assert!(owned == t, "String == Text");
        }
        let e = serde_json::from_str::<Text>("5").unwrap_err().to_string();
        let want = serde_json::from_str::<String>("5").unwrap_err().to_string();
        assert_eq!(e, want);
        let mut v: Vec<Text> = ["b", "a-long-value-on-the-heap", "", "ab"]
            .into_iter()
            .map(Text::from)
            .collect();
        v.sort();
        assert_eq!(v, ["", "a-long-value-on-the-heap", "ab", "b"]);
        let set: HashSet<Text> = v.iter().cloned().collect();
        assert!(set.contains("ab") && set.contains("a-long-value-on-the-heap"));
    }

    /// Every conversion keeps the value, and every comparison can say no
    /// (inline and heap values alike).
    #[test]
    fn conversions_keep_the_value_and_comparisons_can_differ() {
        for s in ["pool-a", "a-provider-name-longer-than-15"] {
            let owned = s.to_string();
            let t = Text::from(s);
            assert_eq!(Text::from(&owned).as_str(), s);
            assert_eq!(Text::from(owned.clone().into_boxed_str()).as_str(), s);
            assert_eq!(Text::from(&t).as_str(), s);
            assert_eq!(String::from(t.clone()), s);
            assert_eq!(String::from(&t), s);
            let r: &str = t.as_ref();
            assert_eq!(r, s);
            let b: &str = t.borrow();
            assert_eq!(b, s);
            assert_eq!(&*t, s);
            for o in [
                Text::from("other"),
                Text::from("another-value-longer-than-15"),
            ] {
                let (os, oo) = (o.as_str(), o.to_string());
                assert!(t != o, "Text != Text");
                assert!(t != os, "Text != &str");
                assert!(t != *os, "Text != str");
                assert!(t != oo, "Text != String");
                assert!(os != t, "&str != Text");
                assert!(*os != t, "str != Text");
                assert!(oo != t, "String != Text");
                assert_ne!(t.cmp(&o), Ordering::Equal);
            }
        }
        // The order is str's, inline against heap both ways.
        let (short, long) = (Text::from("b"), Text::from("a-long-value-on-the-heap"));
        assert_eq!(short.cmp(&long), Ordering::Greater);
        assert_eq!(long.partial_cmp(&short), Some(Ordering::Less));
    }

    #[test]
    fn labels_know_when_they_are_empty_and_collect_from_pairs() {
        let l: Labels = [("k".to_string(), "v".to_string())].into_iter().collect();
        assert!(!l.is_empty());
        assert_eq!(l.get("k").map(String::as_str), Some("v"));
        assert!(Labels::new().is_empty());
        let none: Labels = std::iter::empty().collect();
        assert!(none.is_empty());
    }

    #[test]
    fn the_interner_shares_long_values() {
        let mut i = Interner::default();
        let a = i.text(Text::from("residential-provider-eu"));
        let b = i.text(Text::from("residential-provider-eu".to_string()));
        assert!(a.shares_with(&b), "one allocation for both");
        let c = i.text(Text::from("residential-provider-us"));
        assert!(!a.shares_with(&c));
        assert_eq!(
            (a.as_str(), c.as_str()),
            ("residential-provider-eu", "residential-provider-us")
        );
        // Short values are inline: equal, nothing shared, nothing kept.
        assert_eq!(i.text(Text::from("eu")), "eu");
        assert_eq!(i.texts.len(), 2);

        let m = BTreeMap::from([("tier".to_string(), "gold".to_string())]);
        let l1 = i.labels(Labels::from(m.clone()));
        let l2 = i.labels(Labels::from(m.clone()));
        match (&l1.0, &l2.0) {
            (Some(x), Some(y)) => assert!(Arc::ptr_eq(x, y), "one map for both"),
            _ => panic!("labels kept"),
        }
        assert_eq!(*l1, m);
        let other = i.labels(Labels::from(BTreeMap::from([(
            "tier".into(),
            "iron".into(),
        )])));
        assert_eq!(other["tier"], "iron");
        assert_eq!(i.labels(Labels::new()), Labels::new());
        assert_eq!(i.labels.len(), 2);
    }

    #[test]
    fn labels_read_and_serialise_as_a_map() {
        let none = Labels::new();
        assert!(none.is_empty());
        assert_eq!(format!("{none:?}"), "{}");
        assert_eq!(serde_json::to_string(&none).unwrap(), "{}");
        let m = BTreeMap::from([("k".to_string(), "v".to_string())]);
        let l = Labels::from(m.clone());
        assert_eq!(l["k"], "v");
        assert_eq!(format!("{l:?}"), format!("{m:?}"));
        assert_eq!(
            serde_json::to_string(&l).unwrap(),
            serde_json::to_string(&m).unwrap()
        );
        let back: Labels = serde_json::from_str(r#"{"k":"v"}"#).unwrap();
        assert_eq!(back, l);
        assert_eq!(Labels::from(BTreeMap::new()), Labels::new());
    }
}
