// An independent check of the AS4 signatures the gateway makes, with the JDK's own
// XML Signature implementation (javax.xml.crypto, Apache Santuario inside the JDK).
// Usage: java -cp DIR VerifyAs4 SOAP.xml SIGNER.pem [CID=FILE ...]
// Prints "reference URI ok|BAD" per reference and "signature ok|BAD"; exit 0 only when all
// are ok. The one thing added is the SwA Attachment-Content-Signature-Transform, which the
// JDK does not ship: for a non-XML attachment it is the identity on the content octets.
import java.io.File;
import java.io.FileInputStream;
import java.io.InputStream;
import java.io.OutputStream;
import java.security.InvalidAlgorithmParameterException;
import java.security.Provider;
import java.security.Security;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import java.security.spec.AlgorithmParameterSpec;
import java.util.HashMap;
import java.util.Map;
import javax.xml.crypto.Data;
import javax.xml.crypto.OctetStreamData;
import javax.xml.crypto.URIDereferencer;
import javax.xml.crypto.URIReference;
import javax.xml.crypto.XMLCryptoContext;
import javax.xml.crypto.XMLStructure;
import javax.xml.crypto.dsig.Reference;
import javax.xml.crypto.dsig.TransformService;
import javax.xml.crypto.dsig.XMLSignature;
import javax.xml.crypto.dsig.XMLSignatureFactory;
import javax.xml.crypto.dsig.dom.DOMValidateContext;
import javax.xml.crypto.dsig.spec.TransformParameterSpec;
import javax.xml.parsers.DocumentBuilderFactory;
import org.w3c.dom.Document;
import org.w3c.dom.Element;
import org.w3c.dom.NodeList;

public class VerifyAs4 {
    static final String ACST =
        "http://docs.oasis-open.org/wss/oasis-wss-SwAProfile-1.1#Attachment-Content-Signature-Transform";
    static final String WSU =
        "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd";

    public static class Acst extends TransformService {
        public void init(TransformParameterSpec params) throws InvalidAlgorithmParameterException {}
        public void init(XMLStructure parent, XMLCryptoContext context) {}
        public void marshalParams(XMLStructure parent, XMLCryptoContext context) {}
        public AlgorithmParameterSpec getParameterSpec() { return null; }
        public boolean isFeatureSupported(String feature) { return false; }
        public Data transform(Data data, XMLCryptoContext context) { return data; }
        public Data transform(Data data, XMLCryptoContext context, OutputStream os)
                throws javax.xml.crypto.dsig.TransformException {
            try {
                ((OctetStreamData) data).getOctetStream().transferTo(os);
            } catch (java.io.IOException e) {
                throw new javax.xml.crypto.dsig.TransformException(e);
            }
            return null;
        }
    }

    static class SwaProvider extends Provider {
        SwaProvider() {
            super("SwA", "1.0", "SwA Attachment-Content-Signature-Transform");
            putService(new Provider.Service(this, "TransformService", ACST, Acst.class.getName(),
                null, Map.of("MechanismType", "DOM")));
        }
    }

    public static void main(String[] args) throws Exception {
        Security.addProvider(new SwaProvider());
        DocumentBuilderFactory dbf = DocumentBuilderFactory.newInstance();
        dbf.setNamespaceAware(true);
        dbf.setFeature("http://apache.org/xml/features/disallow-doctype-decl", true);
        Document doc = dbf.newDocumentBuilder().parse(new File(args[0]));
        X509Certificate cert;
        try (InputStream in = new FileInputStream(args[1])) {
            cert = (X509Certificate) CertificateFactory.getInstance("X.509").generateCertificate(in);
        }
        Map<String, String> files = new HashMap<>();
        for (int i = 2; i < args.length; i++) {
            int eq = args[i].indexOf('=');
            files.put(args[i].substring(0, eq), args[i].substring(eq + 1));
        }
        Element signature = (Element) doc.getElementsByTagNameNS(XMLSignature.XMLNS, "Signature").item(0);
        DOMValidateContext ctx = new DOMValidateContext(cert.getPublicKey(), signature);
        NodeList all = doc.getElementsByTagNameNS("*", "*");
        for (int i = 0; i < all.getLength(); i++) {
            Element e = (Element) all.item(i);
            if (e.hasAttributeNS(WSU, "Id")) ctx.setIdAttributeNS(e, WSU, "Id");
        }
        XMLSignatureFactory factory = XMLSignatureFactory.getInstance("DOM");
        URIDereferencer standard = factory.getURIDereferencer();
        ctx.setURIDereferencer((URIReference ref, XMLCryptoContext c) -> {
            String uri = ref.getURI();
            if (uri != null && uri.startsWith("cid:")) {
                String file = files.get(uri.substring(4));
                if (file == null) throw new javax.xml.crypto.URIReferenceException("no attachment " + uri);
                try {
                    return new OctetStreamData(new FileInputStream(file), uri, null);
                } catch (java.io.IOException e) {
                    throw new javax.xml.crypto.URIReferenceException(e);
                }
            }
            return standard.dereference(ref, c);
        });
        XMLSignature sig = factory.unmarshalXMLSignature(ctx);
        boolean all_ok = true;
        for (Object o : sig.getSignedInfo().getReferences()) {
            Reference r = (Reference) o;
            boolean ok = r.validate(ctx);
            all_ok &= ok;
            System.out.println("reference " + r.getURI() + " " + (ok ? "ok" : "BAD"));
        }
        boolean value = sig.getSignatureValue().validate(ctx);
        System.out.println("signature " + (value ? "ok" : "BAD"));
        System.exit(all_ok && value ? 0 : 1);
    }
}
