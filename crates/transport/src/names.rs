//! `named_enum!`: an enum whose variants each have one name (the word the API, the logs and the tracking log
//! show), written once beside the variant, with `ALL` and `as_str` generated from the list.

/// Declares an enum with `ALL` (every variant, in declaration order) and `as_str` (each variant's name).
macro_rules! named_enum {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($(#[$vmeta:meta])* $variant:ident = $word:literal,)* }) => {
        $(#[$meta])*
        $vis enum $name {
            $($(#[$vmeta])* $variant,)*
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The name shown for this value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word,)*
                }
            }
        }
    };
}
