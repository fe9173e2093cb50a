//! Target `image`: one image file of a CIFAR-10 image folder, decoded.
//!
//! The input is the file, decoded by `flotilla_data::decode_image` with the 32×32 size
//! `load_cifar10_dir` requires (the function every image of an image folder goes through).
//! Properties: no panic; a decoded image is 32×32 RGB8. With a given size the decoder may
//! allocate only for that size, so the allowance oracle applies in full. (Without one, a
//! header's size is taken at its word, as `load_image_folder` documents: not fuzzed.)

use crate::loaders::data_dir;
use flotilla_data::{ImageSize, decode_image};
use image::{DynamicImage, ImageFormat};
use std::io::Cursor;
use std::path::Path;

/// The size CIFAR-10 images must have.
const SIZE: ImageSize = ImageSize {
    height: 32,
    width: 32,
};

/// Decodes `data` as a 32×32 image file and checks what decodes.
pub fn check(data: &[u8]) {
    let image = match decode_image(data, Path::new("fuzz-image"), Some(SIZE)) {
        Ok(image) => image,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    assert_eq!(
        (image.height(), image.width()),
        (SIZE.height, SIZE.width),
        "the decoded image has the wrong size"
    );
    assert_eq!(
        image.as_raw().len(),
        32 * 32 * 3,
        "RGB8 has 3 bytes a pixel"
    );
}

/// `image` encoded as `format`.
fn encode(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    image
        .write_to(&mut out, format)
        .expect("a seed image encodes");
    out.into_inner()
}

/// Two CIFAR-10 test JPEGs as stored, and one of them re-encoded as RGB and grey PNG.
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    let test = data_dir().join("cifar10/test");
    let mut seeds = Vec::new();
    for class in ["airplane", "cat"] {
        let path = test.join(class).join("0000.jpg");
        let bytes =
            std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        seeds.push((format!("{class}_jpeg"), bytes));
    }
    let rgb = decode_image(&seeds[0].1, Path::new("airplane/0000.jpg"), Some(SIZE))
        .unwrap_or_else(|e| panic!("a seed image decodes: {e}"));
    let rgb = DynamicImage::ImageRgb8(rgb);
    let grey = DynamicImage::ImageLuma8(rgb.to_luma8());
    seeds.push(("airplane_png".into(), encode(&rgb, ImageFormat::Png)));
    seeds.push(("airplane_grey_png".into(), encode(&grey, ImageFormat::Png)));
    seeds
}
