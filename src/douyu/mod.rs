//! douyu
