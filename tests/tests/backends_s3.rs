//! The backends' S3 client against a real S3-compatible server (s3s-fs on loopback, started
//! by `cargo xtask test`), with credentials from the standard AWS environment variables.

use std::time::Duration;

use futures_util::StreamExt;
use ipfs_accelerate_backends::s3::{S3Client, S3Endpoint};
use ipfs_accelerate_backends::Error;
use tests::servers;

fn client(server: &servers::S3Server) -> S3Client {
    S3Client::new(&S3Endpoint {
        bucket: server.bucket.clone(),
        endpoint: Some(server.endpoint.clone()),
        region: "us-east-1".into(),
        timeout: Duration::from_secs(30),
    })
    .unwrap()
}

fn credentials(access: &str, secret: &str) {
    // nextest runs every test in its own process: the environment is this test's alone.
    std::env::set_var("AWS_ACCESS_KEY_ID", access);
    std::env::set_var("AWS_SECRET_ACCESS_KEY", secret);
}

#[tokio::test]
async fn put_get_range_list_and_delete_against_s3s() {
    let server = servers::s3();
    credentials(&server.access_key, &server.secret_key);
    let s3 = client(&server);
    let prefix = servers::unique("backends-s3");

    let small = format!("{prefix}/small.txt");
    s3.put(&small, b"hello object store").await.unwrap();
    assert_eq!(s3.get(&small).await.unwrap().unwrap().as_ref(), b"hello object store");
    assert_eq!(s3.get_range(&small, 6..12).await.unwrap().unwrap().as_ref(), b"object");
    let head = s3.head(&small).await.unwrap().unwrap();
    assert_eq!(head.size, 18);

    // Above 8 MiB the upload is multipart (5 MiB parts); the object reads back whole.
    let big: Vec<u8> = (0..9 * 1024 * 1024 + 17).map(|i| (i % 251) as u8).collect();
    let big_key = format!("{prefix}/big.bin");
    s3.put(&big_key, &big).await.unwrap();
    assert_eq!(s3.get(&big_key).await.unwrap().unwrap().as_ref(), &big[..]);

    // Listing pages through more keys than one page (1,000) holds.
    let many: Vec<String> = (0..1005).map(|i| format!("{prefix}/many/{i:05}")).collect();
    futures_util::stream::iter(many.iter())
        .for_each_concurrent(32, |key| {
            let s3 = s3.clone();
            async move { s3.put(key, key.as_bytes()).await.unwrap() }
        })
        .await;
    let listed = s3.list(&format!("{prefix}/many")).await.unwrap();
    assert_eq!(listed.len(), 1005);
    assert_eq!(listed.iter().map(|o| o.key.clone()).collect::<Vec<_>>(), many);
    assert_eq!(s3.list(&prefix).await.unwrap().len(), 1007);

    s3.delete(&small).await.unwrap();
    assert_eq!(s3.get(&small).await.unwrap(), None, "a missing object is None, not an error");
    assert_eq!(s3.head(&small).await.unwrap(), None);
    s3.delete(&small).await.unwrap();
}

#[tokio::test]
async fn wrong_credentials_are_an_auth_error() {
    let server = servers::s3();
    credentials(&server.access_key, "not-the-secret");
    let err = client(&server).get("anything").await.unwrap_err();
    assert!(matches!(err, Error::Auth { .. }), "{err:?}");
}
