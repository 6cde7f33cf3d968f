// A move-only callable that keeps its callable inside itself when it fits, for callbacks made
// once per message: std::function puts any capture over 16 bytes on the heap, which was two
// allocations a message on the ingest path (the storage callback and the ingest completion).
#pragma once

#include <cstddef>
#include <new>
#include <type_traits>
#include <utility>

namespace citygate::storage {

template <typename Signature, std::size_t Capacity>
class InplaceFunction;

// Callables of up to Capacity bytes (aligned as a pointer or less, with a noexcept move) live in
// the object; others go to the heap, as with std::function. Pointer alignment, not
// max_align_t's, so one nested in another's captures takes no padding.
// Calling an empty one is undefined, as is calling a moved-from one.
template <typename R, typename... Args, std::size_t Capacity>
class InplaceFunction<R(Args...), Capacity> {
    template <typename T>
    static constexpr bool fits =
        sizeof(T) <= Capacity &&
        alignof(T) <= alignof(void*) && std::is_nothrow_move_constructible_v<T>;

  public:
    InplaceFunction() noexcept = default;
    InplaceFunction(std::nullptr_t) noexcept {}  // NOLINT: as std::function

    template <typename F,
              typename = std::enable_if_t<!std::is_same_v<std::decay_t<F>, InplaceFunction> &&
                                          std::is_invocable_r_v<R, std::decay_t<F>&, Args...>>>
    InplaceFunction(F&& f) {  // NOLINT: implicit, as std::function
        using T = std::decay_t<F>;
        if constexpr (fits<T>) {
            ::new (static_cast<void*>(storage_)) T(std::forward<F>(f));
            ops_ = &inline_ops<T>;
        } else {
            ::new (static_cast<void*>(storage_)) T*(new T(std::forward<F>(f)));
            ops_ = &heap_ops<T>;
        }
    }

    InplaceFunction(InplaceFunction&& other) noexcept { take(other); }
    InplaceFunction& operator=(InplaceFunction&& other) noexcept {
        if (this != &other) {
            reset();
            take(other);
        }
        return *this;
    }
    InplaceFunction& operator=(std::nullptr_t) noexcept {
        reset();
        return *this;
    }
    InplaceFunction(const InplaceFunction&) = delete;
    InplaceFunction& operator=(const InplaceFunction&) = delete;
    ~InplaceFunction() { reset(); }

    explicit operator bool() const noexcept { return ops_ != nullptr; }

    // Whether an F is held without an allocation: for a hot path to static_assert.
    template <typename F>
    static constexpr bool stores_inline = fits<std::decay_t<F>>;

    // As std::function's: const, calling the callable as it is (a mutable lambda may change).
    R operator()(Args... args) const { return ops_->invoke(storage_, std::forward<Args>(args)...); }

  private:
    struct Ops {
        R (*invoke)(void* storage, Args&&... args);
        // Move-constructs `to` from `from` and destroys `from`.
        void (*relocate)(void* from, void* to) noexcept;
        void (*destroy)(void* storage) noexcept;
    };

    template <typename T>
    static constexpr Ops inline_ops{
        [](void* s, Args&&... args) -> R {
            return (*std::launder(static_cast<T*>(s)))(std::forward<Args>(args)...);
        },
        [](void* from, void* to) noexcept {
            T* source = std::launder(static_cast<T*>(from));
            ::new (to) T(std::move(*source));
            source->~T();
        },
        [](void* s) noexcept { std::launder(static_cast<T*>(s))->~T(); },
    };

    template <typename T>
    static constexpr Ops heap_ops{
        [](void* s, Args&&... args) -> R {
            return (**std::launder(static_cast<T**>(s)))(std::forward<Args>(args)...);
        },
        [](void* from, void* to) noexcept { ::new (to) T*(*std::launder(static_cast<T**>(from))); },
        [](void* s) noexcept { delete *std::launder(static_cast<T**>(s)); },
    };

    void take(InplaceFunction& other) noexcept {
        if (!other.ops_) return;
        other.ops_->relocate(other.storage_, storage_);
        ops_ = std::exchange(other.ops_, nullptr);
    }

    void reset() noexcept {
        if (ops_) std::exchange(ops_, nullptr)->destroy(storage_);
    }

    alignas(void*) mutable unsigned char storage_[Capacity];
    const Ops* ops_ = nullptr;
};

}  // namespace citygate::storage
