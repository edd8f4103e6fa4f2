//! A vector in chunks that a snapshot can share, so that copying a whole shard for a snapshot
//! costs microseconds.
//!
//! The shard thread copies its state for every snapshot and goes on deciding while the
//! snapshot thread encodes the copy. With plain `Vec`s that copy is deep: with a million cards
//! and two million holds it took 395 ms, during which the shard answered nothing. Here the
//! elements live in chunks (of `CHUNK` unless the type says otherwise), each a [`Part`]:
//! `share` turns every chunk into an
//! `Arc` and copies the pointers, and the first write to a chunk after that takes it back (a
//! copy of that one chunk if the snapshot still holds it), so the cost of a snapshot is spread
//! over the writes that follow it. Writes to a chunk the state owns cost no atomic operation.
//!
//! It is a deque as far as the ledger needs one: `pop_front` drops the oldest element (whole
//! chunks are released as they empty), `push` appends. The chunks are a plain `Vec`, not a
//! `VecDeque`: an index is a shift, a mask and two plain lookups, which the shard does dozens
//! of times per authorization (with a `VecDeque` a decision took 3 024 instructions, against
//! 2 884: `scripts/decision-instructions`). Released chunks stay in place, emptied, until they
//! are half of the list. Serialized exactly as a sequence,
//! like `Vec` and `VecDeque`, so snapshots and state digests do not depend on the chunking.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Index, IndexMut};
use std::sync::Arc;

use serde::de::{SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Elements per chunk unless the type says otherwise: copying one costs a few microseconds to
/// ~100 µs (cards with their spending controls and histories), small enough not to stall a
/// batch. The collections a snapshot's aftermath writes all over (holds, the key index's
/// entries) use smaller chunks: see `ledger::state` and `ledger::keymap`.
pub const CHUNK: usize = 1024;

/// A value the state owns, or shares with snapshot copies.
#[derive(Clone)]
pub enum Part<T> {
    Owned(T),
    Shared(Arc<T>),
}

impl<T: Clone + Default> Part<T> {
    #[inline]
    pub fn get(&self) -> &T {
        match self {
            Part::Owned(value) => value,
            Part::Shared(value) => value,
        }
    }

    /// The value to write; taken back from sharing first (copied if a snapshot holds it).
    /// Inlined: the shard writes through here many times per authorization, and the value is
    /// almost always owned already.
    #[inline]
    pub fn get_mut(&mut self) -> &mut T {
        if let Part::Shared(_) = self {
            self.take_back();
        }
        match self {
            Part::Owned(value) => value,
            Part::Shared(_) => unreachable!("owned above"),
        }
    }

    /// Turns a shared value into an owned one: the first write after a snapshot.
    #[cold]
    #[inline(never)]
    fn take_back(&mut self) {
        if let Part::Shared(shared) = std::mem::replace(self, Part::Owned(T::default())) {
            *self = Part::Owned(Arc::try_unwrap(shared).unwrap_or_else(|s| (*s).clone()));
        }
    }

    /// Turns the value into a shared one and returns a second handle on it.
    pub fn share(&mut self) -> Part<T> {
        if let Part::Owned(value) = self {
            *self = Part::Shared(Arc::new(std::mem::take(value)));
        }
        self.clone()
    }
}

/// A deque of `T` in chunks of `C` (a power of two). `Clone` is deep; `share` is the cheap
/// copy.
#[derive(Clone)]
pub struct CowVec<T, const C: usize = CHUNK> {
    /// Oldest first. The first `front / C` are released (emptied) and removed in bulk by
    /// `drop_released`.
    chunks: Vec<Part<Vec<T>>>,
    /// Elements popped from the front, counted from the start of `chunks[0]`.
    front: usize,
    len: usize,
    /// The next chunk, allocated ahead by `ahead` (empty, with capacity `C`), or no
    /// allocation.
    next: Vec<T>,
}

impl<T, const C: usize> Default for CowVec<T, C> {
    fn default() -> Self {
        CowVec {
            chunks: Vec::new(),
            front: 0,
            len: 0,
            next: Vec::new(),
        }
    }
}

impl<T: Clone, const C: usize> CowVec<T, C> {
    pub fn len(&self) -> usize {
        self.len
    }

    /// Chunk and offset of logical index `i` (which must be below `len`).
    #[inline]
    fn locate(&self, i: usize) -> (usize, usize) {
        let p = self.front + i;
        (p / C, p % C)
    }

    #[inline]
    pub fn get(&self, i: usize) -> Option<&T> {
        if i >= self.len {
            return None;
        }
        let (c, o) = self.locate(i);
        Some(&self.chunks[c].get()[o])
    }

    pub fn front(&self) -> Option<&T> {
        self.get(0)
    }

    /// Drops the first element; its chunk is released once all of it is popped.
    pub fn pop_front(&mut self) {
        if self.len == 0 {
            return;
        }
        self.len -= 1;
        self.front += 1;
        if self.len == 0 {
            self.chunks.clear();
            self.front = 0;
        } else if self.front % C == 0 {
            let released = self.front / C;
            self.chunks[released - 1] = Part::Owned(Vec::new());
            // Removing them moves the live chunks down: done once they are as many as the
            // released ones, so each chunk is moved at most once per chunk released.
            if 2 * released >= self.chunks.len() {
                self.drop_released();
            }
        }
    }

    /// Removes the released chunks from the front of the list.
    fn drop_released(&mut self) {
        let released = self.front / C;
        self.chunks.drain(..released);
        self.front -= released * C;
    }

    /// Every element, oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &T> {
        self.slices().flat_map(|slice| slice.iter())
    }

    /// Every element, oldest first, a chunk's slice at a time.
    pub fn slices(&self) -> impl DoubleEndedIterator<Item = &[T]> {
        let first = self.front % C;
        self.chunks[self.front / C..]
            .iter()
            .enumerate()
            .map(move |(n, chunk)| &chunk.get()[if n == 0 { first } else { 0 }..])
    }

    /// Mutable access; takes the element's chunk back from sharing first.
    #[inline]
    pub fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        if i >= self.len {
            return None;
        }
        let (c, o) = self.locate(i);
        Some(&mut self.chunks[c].get_mut()[o])
    }

    /// Appends; inlined (the shard pushes several times per authorization), with the start
    /// of a new chunk out of line.
    #[inline]
    pub fn push(&mut self, value: T) {
        let (c, o) = self.locate(self.len);
        let chunks = self.chunks.len();
        match self.chunks.last_mut() {
            Some(last) if o != 0 && c + 1 == chunks => last.get_mut().push(value),
            _ => self.push_chunk(value),
        }
        self.len += 1;
    }

    /// Where the next `n` pushes will write, in at most two runs of slots (the rest of the
    /// last chunk, then the start of the next one, allocated here if need be), so that the
    /// caller can read them ahead; `n` is capped at `C`. Changes no element.
    pub fn ahead(&mut self, n: usize) -> [(*const T, usize); 2] {
        let none = (std::ptr::null(), 0);
        let n = n.min(C);
        let (c, o) = self.locate(self.len);
        // Pushes left before a new chunk starts: none when the last one is full (or absent).
        let in_last = if o == 0 { 0 } else { C - o };
        let tail = match self.chunks.last() {
            Some(Part::Owned(last)) if in_last > 0 && c + 1 == self.chunks.len() => {
                // A chunk taken back from a snapshot is a copy without spare capacity (its
                // next push moves it): only the capacity it has now is named.
                let spare = (last.capacity() - last.len()).min(in_last).min(n);
                (last.as_ptr().wrapping_add(last.len()), spare)
            }
            // A shared last chunk is copied by the next push: nothing to read ahead there.
            Some(_) if in_last > 0 => return [none; 2],
            _ => none,
        };
        let rest = n.saturating_sub(in_last);
        if rest == 0 {
            return [tail, none];
        }
        if self.next.capacity() < C {
            self.next = Vec::with_capacity(C);
        }
        [tail, (self.next.as_ptr(), rest)]
    }

    #[cold]
    #[inline(never)]
    fn push_chunk(&mut self, value: T) {
        let mut chunk = if self.next.capacity() >= C {
            std::mem::take(&mut self.next)
        } else {
            Vec::with_capacity(C)
        };
        chunk.push(value);
        self.chunks.push(Part::Owned(chunk));
    }

    /// A copy that shares every chunk with this vector: O(chunks), no element is copied.
    pub fn share(&mut self) -> Self {
        self.drop_released();
        CowVec {
            chunks: self.chunks.iter_mut().map(Part::share).collect(),
            front: self.front,
            len: self.len,
            next: Vec::new(),
        }
    }
}

impl<T: Clone, const C: usize> Index<usize> for CowVec<T, C> {
    type Output = T;
    #[inline]
    fn index(&self, i: usize) -> &T {
        match self.get(i) {
            Some(v) => v,
            None => out_of_range(i, self.len),
        }
    }
}

impl<T: Clone, const C: usize> IndexMut<usize> for CowVec<T, C> {
    #[inline]
    fn index_mut(&mut self, i: usize) -> &mut T {
        let len = self.len;
        match self.get_mut(i) {
            Some(v) => v,
            None => out_of_range(i, len),
        }
    }
}

#[cold]
#[inline(never)]
fn out_of_range(i: usize, len: usize) -> ! {
    panic!("index {i} out of range for length {len}")
}

impl<T: fmt::Debug + Clone, const C: usize> fmt::Debug for CowVec<T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<T: Serialize + Clone, const C: usize> Serialize for CowVec<T, C> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = serializer.serialize_seq(Some(self.len))?;
        for value in self.iter() {
            seq.serialize_element(value)?;
        }
        seq.end()
    }
}

impl<'de, T: Deserialize<'de> + Clone, const C: usize> Deserialize<'de> for CowVec<T, C> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SeqVisitor<T, const C: usize>(PhantomData<T>);
        impl<'de, T: Deserialize<'de> + Clone, const C: usize> Visitor<'de> for SeqVisitor<T, C> {
            type Value = CowVec<T, C>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a sequence")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
                let mut out = CowVec::<T, C>::default();
                // Bounded by the input: each element is read from it.
                while let Some(value) = access.next_element()? {
                    out.push(value);
                }
                Ok(out)
            }
        }
        deserializer.deserialize_seq(SeqVisitor::<T, C>(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    #[test]
    fn behaves_like_a_deque_across_chunk_edges() {
        let mut v: CowVec<_> = CowVec::default();
        let mut model = VecDeque::new();
        for n in 0..(3 * CHUNK as u64 + 17) {
            v.push(n);
            model.push_back(n);
            if n % 3 == 0 {
                v.pop_front();
                model.pop_front();
            }
            assert_eq!(v.len(), model.len());
        }
        assert!(v.iter().eq(model.iter()));
        assert!(v.iter().rev().eq(model.iter().rev()));
        for i in [0, 1, CHUNK - 1, CHUNK, v.len() - 1] {
            assert_eq!(v.get(i), model.get(i));
            assert_eq!(v[i], model[i]);
        }
        assert_eq!(v.get(v.len()), None);
        assert_eq!(v.front(), model.front());
        v[5] += 1_000_000;
        *v.get_mut(6).unwrap() += 1_000_000;
        model[5] += 1_000_000;
        model[6] += 1_000_000;
        assert!(v.iter().eq(model.iter()));
        // Popping everything leaves an empty vector that grows again from nothing.
        while model.pop_front().is_some() {
            v.pop_front();
        }
        v.pop_front();
        assert_eq!((v.len(), v.chunks.len(), v.front), (0, 0, 0));
        v.push(7);
        assert_eq!((v.len(), v[0]), (1, 7));
    }

    fn same_arc<T>(a: &Part<T>, b: &Part<T>) -> bool {
        matches!((a, b), (Part::Shared(a), Part::Shared(b)) if Arc::ptr_eq(a, b))
    }

    #[test]
    fn a_shared_copy_is_a_snapshot_writes_do_not_reach() {
        let mut v: CowVec<_> = CowVec::default();
        for n in 0..(2 * CHUNK as u32) {
            v.push(n);
        }
        let snapshot = v.share();
        // The copy shares every chunk.
        assert!(v
            .chunks
            .iter()
            .zip(&snapshot.chunks)
            .all(|(a, b)| same_arc(a, b)));
        v[3] = 99;
        v.push(5);
        v.pop_front();
        assert_eq!(snapshot[3], 3);
        assert_eq!(snapshot.len(), 2 * CHUNK);
        assert_eq!(snapshot.iter().copied().max(), Some(2 * CHUNK as u32 - 1));
        // Only the written chunks were copied; the middle one is still shared.
        assert!(matches!(v.chunks[0], Part::Owned(_)));
        assert!(same_arc(&v.chunks[1], &snapshot.chunks[1]));
        assert_eq!(v[2], 99);
        // Once the snapshot is gone, a write takes a chunk back without copying it.
        let middle = match &v.chunks[1] {
            Part::Shared(arc) => Arc::as_ptr(arc) as usize,
            Part::Owned(_) => unreachable!(),
        };
        drop(snapshot);
        let elements = match &v.chunks[1] {
            Part::Shared(arc) => arc.as_ptr() as usize,
            Part::Owned(_) => unreachable!(),
        };
        v[CHUNK] += 1;
        assert!(matches!(&v.chunks[1], Part::Owned(c) if c.as_ptr() as usize == elements));
        assert_ne!(middle, 0);
        // A deep clone shares nothing.
        let deep = v.clone();
        assert!(deep.iter().eq(v.iter()));
    }

    #[test]
    fn a_smaller_chunk_size_shares_and_copies_per_chunk() {
        let mut v: CowVec<u32, 4> = CowVec::default();
        for n in 0..10 {
            v.push(n);
        }
        assert_eq!(v.chunks.len(), 3);
        assert_eq!(
            v.slices().map(<[u32]>::len).collect::<Vec<_>>(),
            vec![4, 4, 2]
        );
        let snapshot = v.share();
        v[5] = 50;
        v.push(10);
        v.pop_front();
        // Chunk 1 (the write) and chunk 2 (the push) were copied; chunk 0 is still shared.
        assert!(same_arc(&v.chunks[0], &snapshot.chunks[0]));
        assert!(matches!(v.chunks[1], Part::Owned(_)) && matches!(v.chunks[2], Part::Owned(_)));
        assert!(snapshot.iter().copied().eq(0..10));
        assert!(v.iter().copied().eq([1, 2, 3, 4, 50, 6, 7, 8, 9, 10]));
        let back: CowVec<u32, 4> =
            postcard::from_bytes(&postcard::to_allocvec(&v).unwrap()).unwrap();
        assert!(back.iter().eq(v.iter()));
        assert_eq!(back.chunks.len(), 3);
    }

    #[test]
    fn released_chunks_are_removed_in_bulk() {
        let mut v: CowVec<u32, 4> = CowVec::default();
        let mut model = VecDeque::new();
        // Growing while popping, then a steady state of one push for one pop.
        for n in 0..3_000u32 {
            v.push(n);
            model.push_back(n);
            if n % 2 == 1 || n >= 1_000 {
                v.pop_front();
                model.pop_front();
            }
            let live = v.len().div_ceil(4) + 1;
            assert!(
                v.chunks.len() <= 2 * live,
                "{} chunks for {live}",
                v.chunks.len()
            );
            assert_eq!(v.front(), model.front());
        }
        assert!(v.iter().eq(model.iter()));
        assert_eq!(v[v.len() - 1], 2_999);
        // A copy for a snapshot takes only the live chunks.
        let copy = v.share();
        assert!(v.front < 4);
        assert_eq!(v.chunks.len(), (v.front + v.len()).div_ceil(4));
        assert!(copy.iter().eq(model.iter()));
    }

    #[test]
    fn encodes_like_a_vec() {
        let mut v: CowVec<_> = CowVec::default();
        let mut plain = Vec::new();
        for n in 0..(CHUNK as u32 + 10) {
            v.push(n);
            plain.push(n);
        }
        v.pop_front();
        plain.remove(0);
        let bytes = postcard::to_allocvec(&v).unwrap();
        assert_eq!(bytes, postcard::to_allocvec(&plain).unwrap());
        let back: CowVec<u32> = postcard::from_bytes(&bytes).unwrap();
        assert!(back.iter().eq(plain.iter()));
    }

    /// The address of element `i`.
    fn at<T: Clone, const C: usize>(v: &CowVec<T, C>, i: usize) -> *const T {
        std::ptr::from_ref(&v[i])
    }

    #[test]
    fn ahead_names_the_slots_the_next_pushes_fill() {
        let mut v: CowVec<u64, 4> = CowVec::default();
        // Empty: all of it in a chunk allocated ahead, and the cap at one chunk.
        let [tail, next] = v.ahead(9);
        assert_eq!((tail.1, next.1), (0, 4));
        let allocated = next.0;
        for n in 0..3 {
            v.push(n);
        }
        assert_eq!(
            at(&v, 0),
            allocated,
            "the chunk allocated ahead is the one used"
        );
        // One slot left in the last chunk, then the next one.
        let [tail, next] = v.ahead(3);
        assert_eq!((tail.0, tail.1, next.1), (at(&v, 2).wrapping_add(1), 1, 2));
        let next_chunk = next.0;
        for n in 3..6 {
            v.push(n);
        }
        assert_eq!(at(&v, 4), next_chunk);
        assert!(v.iter().copied().eq(0..6));
        // Within the last chunk: nothing allocated ahead.
        let [tail, next] = v.ahead(2);
        assert_eq!((tail.0, tail.1, next.1), (at(&v, 5).wrapping_add(1), 2, 0));
        // A full last chunk: all in the next one; a copy for a snapshot takes no spare chunk.
        v.push(6);
        v.push(7);
        let [tail, next] = v.ahead(1);
        assert_eq!((tail.1, next.1), (0, 1));
        let copy = v.share();
        assert_eq!((copy.next.capacity(), v.next.capacity()), (0, 4));
        // A shared last chunk with room: the next push copies it, so nothing to name.
        v.pop_front();
        v.push(8);
        let _copy = v.share();
        assert_eq!(v.ahead(2), [(std::ptr::null(), 0); 2]);
        v.push(9);
        assert!(v.iter().copied().eq(1..10));
        // The chunk taken back by that push is a copy: only its own spare capacity is named,
        // and the next chunk only for the pushes past this chunk's end.
        let last = v.chunks.last().unwrap().get();
        let (spare, in_last) = (last.capacity() - last.len(), 4 - last.len());
        let [tail, next] = v.ahead(4);
        assert_eq!(tail.1, spare.min(in_last));
        assert_eq!(next.1, 4 - in_last);
    }
}
