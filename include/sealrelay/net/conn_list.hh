// A shard's open connections as an intrusive doubly linked list (T has `T* prev, *next`):
// O(1) insert and unlink with no allocation, walked on every tick for deadlines and at
// drain. Shared by the SMTP server and the HTTP API. One shard's thread only.
#pragma once
#include <cstddef>

namespace sr::net {

template <class T>
class conn_list {
 public:
  void push_front(T* c) {
    c->prev = nullptr;
    c->next = _head;
    if (_head) _head->prev = c;
    _head = c;
    ++_size;
  }
  void erase(T* c) {
    if (c->prev) c->prev->next = c->next;
    else _head = c->next;
    if (c->next) c->next->prev = c->prev;
    --_size;
  }
  // Call fn(c) on each connection; fn may unlink (even free) c itself, no other.
  template <class F>
  void for_each(F&& fn) {
    for (T* c = _head; c;) {
      T* next = c->next;
      fn(c);
      c = next;
    }
  }
  // Free every connection still listed (at exit: they are abandoned with the process).
  void delete_all() {
    while (_head) {
      T* c = _head;
      _head = c->next;
      delete c;
    }
    _size = 0;
  }
  std::size_t size() const { return _size; }

 private:
  T* _head = nullptr;
  std::size_t _size = 0;
};

}  // namespace sr::net
